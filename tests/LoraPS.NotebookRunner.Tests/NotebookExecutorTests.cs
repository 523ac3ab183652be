using LoraPS.NotebookRunner.Documents;
using Xunit;

namespace LoraPS.NotebookRunner.Tests;

/// <summary>
/// Runs notebooks for real. They change the process's working directory and Console, and the runner's
/// LoraPS.Notebooks.Notebook state is process-wide, so these never run in parallel with each other.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class NotebookCollection
{
    public const string Name = "Notebook runs";
}

[Collection(NotebookCollection.Name)]
public sealed class NotebookExecutorTests : IDisposable
{
    // One torch thread: the suite runs beside other test processes, and libtorch's spinning OpenMP workers made oversubscribed
    // training steps tens of times slower on the 2-core development machine.
    static NotebookExecutorTests() => NotebookAssemblies.SetTorchThreads(1);

    // xunit makes one instance per test, and this collection runs one test at a time.
    public void Dispose()
    {
        if (Directory.Exists(TestNotebooks.Scratch)) Directory.Delete(TestNotebooks.Scratch, recursive: true);
    }

    static NotebookExecutor Executor(bool smoke = true) =>
        new(NotebookAssemblies.ModuleManifest ?? throw new InvalidOperationException("Build the module first (out/LoraPS)."), smoke);

    [Fact]
    public void Cells_of_both_kernels_run_in_order_share_state_and_write_text_and_images()
    {
        string path = TestNotebooks.Write("both.ipynb",
            TestNotebooks.Markdown("# both kernels"),
            TestNotebooks.Code("$model = Import-LoraModel\n$n = 21\n\"smoke=$LoraSmoke\"\nWrite-Warning 'careful'"),
            TestNotebooks.Code("#!csharp\n#r \"../../LoraPS/LoraPS.Core.dll\"\nvar model = Notebook.PowerShellVariable<LoraPS.Models.LoraModel>(\"model\");\n" +
                               "int twice = 2 * Notebook.PowerShellVariable<int>(\"n\");\nConsole.WriteLine($\"{model.Name} {twice}\");"),
            TestNotebooks.Code("#!csharp\nConsole.WriteLine(twice + 1);\nLoraPlot.Bars(\"b\", \"y\", new[] { \"a\" }, new[] { 1.0 })"),
            TestNotebooks.Code("[LoraPS.Notebooks.Notebook]::CSharpVariable('twice')\n[LoraPS.Notebooks.LoraPlot]::Line('l', 'x', 'y', @([LoraPS.Notebooks.PlotSeries]::Steps('s', @(1, 2))))"),
            TestNotebooks.Code("  \n"));
        var doc = NotebookDocument.Load(path);

        var run = Executor().Run(doc, path);

        Assert.True(run.Succeeded, run.Failure?.Message);
        Assert.Equal(4, run.CellsRun);
        var code = doc.Cells.Where(c => c.IsCode).ToList();
        Assert.Equal(new int?[] { 1, 2, 3, 4, null }, code.Select(c => c.ExecutionCount));
        Assert.Contains("smoke=True", Text(code[0], "stdout"));
        Assert.Contains("WARNING: careful", Text(code[0], "stderr"));
        Assert.Equal("stories260K 42\n", Text(code[1], "stdout"));
        Assert.Equal("43\n", Text(code[2], "stdout"));
        Assert.Equal("display_data", (string)code[2].Outputs.Last()!["output_type"]!);
        Assert.Contains("42", Text(code[3], "stdout"));
        Assert.NotNull(code[3].Outputs.Last()!["data"]!["image/png"]);

        // Written back and read again, the outputs are still there.
        doc.Save(path);
        Assert.Equal(4, NotebookDocument.Load(path).Cells.Count(c => c.Outputs.Count > 0));
    }

    [Theory]
    [InlineData("pwsh", "throw 'boom'", "boom")]
    [InlineData("pwsh", "Write-Error 'not fatal but an error'", "not fatal but an error")]
    [InlineData("csharp", "throw new InvalidOperationException(\"bad state\");", "bad state")]
    [InlineData("csharp", "int x = \"text\";", "CS0029")]
    public void An_error_stops_the_notebook_at_that_cell(string kernel, string failing, string expected)
    {
        string path = TestNotebooks.Write("fails.ipynb",
            TestNotebooks.Code("'first'"),
            TestNotebooks.Markdown("text"),
            TestNotebooks.Code(failing, kernel: kernel),
            TestNotebooks.Code("'never'"));
        var doc = NotebookDocument.Load(path);

        var run = Executor().Run(doc, path);

        Assert.False(run.Succeeded);
        Assert.Equal(3, run.Failure!.Cell);
        Assert.Equal(kernel, run.Failure.Kernel);
        Assert.Contains(expected, run.Failure.Message);
        Assert.Equal("error", (string)doc.Cells[2].Outputs.Last()!["output_type"]!);
        Assert.Null(doc.Cells[3].ExecutionCount);
    }

    [Fact]
    public void A_missing_reference_names_where_it_looked()
    {
        string path = TestNotebooks.Write("ref.ipynb", TestNotebooks.Code("#r \"nowhere/Missing.dll\"\n1", kernel: "csharp"));
        var run = Executor().Run(NotebookDocument.Load(path), path);
        Assert.Contains("Missing.dll", run.Failure!.Message);
    }

    public static TheoryData<string> RepositoryNotebooks()
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.GetFiles(Path.Combine(TestNotebooks.RepoRoot, "notebooks"), "*.ipynb").Order())
            data.Add(Path.GetFileName(file));
        return data;
    }

    /// <summary>Every notebook in notebooks/ runs top to bottom in smoke mode (tiny step counts), without writing.</summary>
    [Theory]
    [MemberData(nameof(RepositoryNotebooks))]
    public void Repository_notebook_runs_in_smoke_mode(string name)
    {
        string path = Path.Combine(TestNotebooks.RepoRoot, "notebooks", name);
        var doc = NotebookDocument.Load(path);
        var run = Executor().Run(doc, path);
        Assert.True(run.Succeeded, $"cell {run.Failure?.Cell} ({run.Failure?.Kernel}): {run.Failure?.Message}");
        Assert.Contains(doc.Cells, c => c.Outputs.Any(o => o?["data"]?["image/png"] is not null));
    }

    static string Text(NotebookCell cell, string stream) => string.Concat(cell.Outputs
        .Where(o => (string?)o!["output_type"] == "stream" && (string?)o["name"] == stream)
        .SelectMany(o => o!["text"]!.AsArray().Select(l => (string?)l)));
}
