using LoraPS.NotebookRunner.Documents;

namespace LoraPS.NotebookRunner;

/// <summary>
/// loraps-notebook: runs .NET polyglot notebooks headlessly and writes their outputs back.
/// <code>
/// loraps-notebook [--smoke] [--no-write | --output-dir DIR] [--echo] notebook.ipynb...
/// </code>
/// </summary>
public static class Program
{
    const string Usage = """
        Usage: loraps-notebook [--smoke] [--no-write | --output-dir <dir>] [--echo] <notebook.ipynb>...

        Runs each notebook's cells top to bottom (pwsh cells with LoraPS imported, C# cells with Roslyn) and writes
        the outputs, plots included, back into the .ipynb. Stops a notebook at its first failing cell and exits 1,
        naming the cell; a failed notebook is not written.
          --smoke            tiny step counts ($LoraSmoke / Notebook.Smoke), for tests; implies --no-write
          --no-write         run only
          --output-dir <d>   write the executed notebooks into <d> instead of in place
          --echo             also print each cell's text output
          --threads <n>      torch intra-op threads (default: libtorch's; 1 helps a lot on a machine busy with other work)
        """;

    public static int Main(string[] args)
    {
        bool smoke = false, write = true, echo = false;
        bool writeAsked = false;
        string? outputDir = null;
        var files = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--smoke": smoke = true; break;
                case "--no-write": write = false; break;
                case "--write": writeAsked = true; break;
                case "--echo": echo = true; break;
                case "--threads" when i + 1 < args.Length && int.TryParse(args[i + 1], out int threads) && threads > 0:
                    NotebookAssemblies.SetTorchThreads(threads);
                    i++;
                    break;
                case "--output-dir" when i + 1 < args.Length: outputDir = args[++i]; writeAsked = true; break;
                case "-h" or "--help" or "-?": Console.WriteLine(Usage); return 0;
                case var a when a.StartsWith('-'): Console.Error.WriteLine($"loraps-notebook: unknown option {a}\n\n{Usage}"); return 2;
                default: files.Add(args[i]); break;
            }
        }
        if (files.Count == 0) { Console.Error.WriteLine(Usage); return 2; }
        if (smoke && !writeAsked) write = false; // smoke outputs must not replace a full run's committed ones
        if (NotebookAssemblies.ModuleManifest is not { } manifest || !File.Exists(manifest))
        {
            Console.Error.WriteLine("loraps-notebook: cannot find the LoraPS module (out/LoraPS/LoraPS.psd1). Build it with 'dotnet build LoraPS.sln -c Release' or set LORAPS_MODULE.");
            return 1;
        }

        var executor = new NotebookExecutor(manifest, smoke, Console.Out, echo);
        int failures = 0;
        foreach (var file in files)
        {
            Console.WriteLine($"{file}{(smoke ? " (smoke)" : "")}");
            NotebookDocument document;
            try { document = NotebookDocument.Load(file); }
            catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"loraps-notebook: {e.Message}");
                failures++;
                continue;
            }
            var run = executor.Run(document, file);
            if (run.Failure is { } failure)
            {
                failures++;
                Console.Error.WriteLine($"loraps-notebook: {file}: cell {failure.Cell} ({failure.Kernel}) failed:\n{failure.Message}");
                continue;
            }
            string? target = !write ? null : outputDir is null ? file : Path.Combine(Directory.CreateDirectory(outputDir).FullName, Path.GetFileName(file));
            if (target is not null) document.Save(target);
            Console.WriteLine($"  ok: {run.CellsRun} cells in {run.Elapsed.TotalSeconds:F1} s{(target is null ? "" : $", written to {target}")}");
        }
        return failures == 0 ? 0 : 1;
    }
}
