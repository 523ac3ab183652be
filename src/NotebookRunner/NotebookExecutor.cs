using System.Diagnostics;
using LoraPS.NotebookRunner.Documents;
using LoraPS.NotebookRunner.Kernels;
using LoraPS.Notebooks;

namespace LoraPS.NotebookRunner;

/// <summary>Why a notebook stopped: the 1-based cell number, its kernel and the error text.</summary>
public sealed record CellFailure(int Cell, string Kernel, string Message);

/// <summary>What running one notebook did.</summary>
public sealed record NotebookRun(string Path, int CellsRun, TimeSpan Elapsed, CellFailure? Failure)
{
    public bool Succeeded => Failure is null;
}

/// <summary>
/// Runs a notebook's code cells top to bottom in fresh kernels (one pwsh runspace, one C# script state), with the
/// notebook's folder as working directory, as Jupyter does. Stops at the first failing cell. Outputs and execution
/// counts are written into the <see cref="NotebookDocument"/>; saving it is the caller's choice.
/// </summary>
public sealed class NotebookExecutor(string moduleManifest, bool smoke, TextWriter? log = null, bool echo = false)
{
    public NotebookRun Run(NotebookDocument document, string notebookPath)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(notebookPath))!;
        string moduleFolder = Path.GetDirectoryName(moduleManifest)!;
        string previousDirectory = Environment.CurrentDirectory;
        Environment.CurrentDirectory = folder;
        Notebook.Smoke = smoke;
        Environment.SetEnvironmentVariable("LORAPS_NOTEBOOK_SMOKE", smoke ? "1" : null);
        Notebook.RepoRoot = RepoRootAbove(folder) ?? Path.GetDirectoryName(Path.GetDirectoryName(moduleFolder))!;

        var total = Stopwatch.StartNew();
        PowerShellKernel? pwsh = null;
        CSharpKernel? csharp = null;
        int count = 0;
        try
        {
            var codeCells = document.Cells.Where(c => c.IsCode).ToList();
            foreach (var cell in codeCells)
            {
                var (kernel, code) = CellKernel.Resolve(cell, document.DefaultKernel);
                if (string.IsNullOrWhiteSpace(code))
                {
                    cell.SetResult(null, []);
                    continue;
                }
                ICellKernel runner = kernel switch
                {
                    CellKernel.PowerShell => pwsh ??= new PowerShellKernel(moduleManifest, folder, smoke),
                    CellKernel.CSharp => csharp ??= new CSharpKernel(folder, moduleFolder),
                    _ => throw new NotSupportedException($"cell {cell.Number}: the kernel '{kernel}' is not supported (use pwsh or csharp)."),
                };
                var outputs = new CellOutputs();
                var watch = Stopwatch.StartNew();
                log?.Write($"  cell {cell.Number,3} ({kernel,-6}) ");
                Notebook.Displayer = outputs.Display;
                string? error;
                try { error = runner.Run(code, outputs); }
                finally { Notebook.Displayer = null; }
                cell.SetResult(++count, outputs.ToJson());
                log?.WriteLine($"{watch.Elapsed.TotalSeconds,7:F1} s{(error is null ? "" : "  FAILED")}");
                if (echo) log?.Write(Indent(outputs.Text()));
                if (error is not null) return new NotebookRun(notebookPath, count, total.Elapsed, new CellFailure(cell.Number, kernel, error));
            }
            return new NotebookRun(notebookPath, count, total.Elapsed, null);
        }
        catch (Exception e) when (e is NotSupportedException or InvalidOperationException)
        {
            return new NotebookRun(notebookPath, count, total.Elapsed, new CellFailure(count + 1, "?", e.Message));
        }
        finally
        {
            csharp?.Dispose();
            pwsh?.Dispose();
            Environment.CurrentDirectory = previousDirectory;
        }
    }

    /// <summary>The folder with LoraPS.sln at or above <paramref name="folder"/> (the module may be a copy elsewhere).</summary>
    static string? RepoRootAbove(string folder)
    {
        for (var dir = new DirectoryInfo(folder); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "LoraPS.sln"))) return dir.FullName;
        return null;
    }

    static string Indent(string text) =>
        text.Length == 0 ? "" : string.Concat(text.TrimEnd('\n').Split('\n').Select(l => "      | " + l + "\n"));
}
