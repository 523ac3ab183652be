namespace LoraPS.NotebookRunner.Documents;

/// <summary>
/// Which kernel runs a code cell. A first-line magic (<c>#!csharp</c>, <c>#!pwsh</c>) wins over the cell metadata,
/// which wins over the notebook's default — the order .NET Interactive used.
/// </summary>
public static class CellKernel
{
    public const string PowerShell = "pwsh";
    public const string CSharp = "csharp";

    /// <summary>The canonical kernel for a name polyglot notebooks use, or null for names the runner does not run.</summary>
    public static string? Normalize(string? name) => name?.Trim().ToLowerInvariant() switch
    {
        "pwsh" or "powershell" or "ps1" => PowerShell,
        "csharp" or "c#" or "cs" => CSharp,
        null or "" => null,
        var other => other, // kept so the error can name it
    };

    /// <summary>The kernel of <paramref name="cell"/> and its code with a kernel magic line removed (as a blank line, so line numbers hold).</summary>
    public static (string Kernel, string Code) Resolve(NotebookCell cell, string defaultKernel)
    {
        string source = cell.Source;
        int end = source.IndexOf('\n');
        string first = (end < 0 ? source : source[..end]).Trim();
        if (first.StartsWith("#!", StringComparison.Ordinal) && Normalize(first[2..]) is { } magic &&
            magic is PowerShell or CSharp)
            return (magic, end < 0 ? "" : "\n" + source[(end + 1)..]);
        return (cell.MetadataKernel ?? defaultKernel, source);
    }
}
