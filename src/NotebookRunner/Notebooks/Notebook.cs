namespace LoraPS.Notebooks;

/// <summary>
/// What a notebook can ask the runner, from either kernel: whether this is a smoke run, where the repository is,
/// to display something, and the other kernel's variables. In pwsh: <c>[LoraPS.Notebooks.Notebook]::Smoke</c>
/// (or simply <c>$LoraSmoke</c>); in C#: <c>Notebook.Smoke</c>.
/// </summary>
public static class Notebook
{
    /// <summary>
    /// True in a smoke run (<c>--smoke</c>, or LORAPS_NOTEBOOK_SMOKE=1): notebooks shrink step counts and sweeps to a
    /// few seconds, so the test suite can run every notebook top to bottom.
    /// </summary>
    public static bool Smoke { get; internal set; } = Environment.GetEnvironmentVariable("LORAPS_NOTEBOOK_SMOKE") == "1";

    /// <summary>Picks the full-run value or the smoke-run value: <c>Notebook.Pick(400, 4)</c>.</summary>
    public static T Pick<T>(T full, T smoke) => Smoke ? smoke : full;

    /// <summary>The repository root (the folder with LoraPS.sln above the notebook), for paths to data/ and models/.</summary>
    public static string RepoRoot { get; internal set; } = Directory.GetCurrentDirectory();

    /// <summary>A path under the repository root: <c>Notebook.RepoPath("data", "glue", "sst2")</c>.</summary>
    public static string RepoPath(params string[] parts) => Path.Combine([RepoRoot, .. parts]);

    /// <summary>Receives what <see cref="Display"/> is given; set by the runner for the cell being executed.</summary>
    internal static Action<object?>? Displayer { get; set; }
    internal static Func<string, object?>? PowerShellVariables { get; set; }
    internal static Func<string, object?>? CSharpVariables { get; set; }

    /// <summary>Shows <paramref name="value"/> in the current cell's output: an image for a <see cref="NotebookImage"/>, text otherwise.</summary>
    public static void Display(object? value)
    {
        if (Displayer is null) throw new InvalidOperationException("Notebook.Display works only inside a cell run by the notebook runner.");
        Displayer(value);
    }

    /// <summary>A variable of the pwsh kernel (its value, unwrapped from PSObject), or null when it is not set.</summary>
    public static object? PowerShellVariable(string name) =>
        (PowerShellVariables ?? throw new InvalidOperationException("No pwsh kernel is running."))(name);

    /// <summary>A pwsh variable converted to <typeparamref name="T"/> (e.g. <c>Notebook.PowerShellVariable&lt;LoraModel&gt;("model")</c>).</summary>
    public static T PowerShellVariable<T>(string name) => PowerShellVariable(name) switch
    {
        T value => value,
        null => throw new InvalidOperationException($"The pwsh variable ${name} is not set."),
        var other => (T)System.Management.Automation.LanguagePrimitives.ConvertTo(other, typeof(T), System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>A variable declared by an earlier C# cell, or null (for pwsh: <c>[LoraPS.Notebooks.Notebook]::CSharpVariable('losses')</c>).</summary>
    public static object? CSharpVariable(string name) =>
        (CSharpVariables ?? throw new InvalidOperationException("No C# cell has run yet."))(name);
}
