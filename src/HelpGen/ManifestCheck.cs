using System.Collections;
using System.Management.Automation.Language;

namespace LoraPS.HelpGen;

/// <summary>Reads a module manifest (.psd1) safely, as Import-PowerShellDataFile does: parse, never execute.</summary>
public static class ManifestCheck
{
    public static Hashtable Read(string path)
    {
        var ast = Parser.ParseFile(path, out _, out var errors);
        if (errors.Length > 0)
            throw new InvalidDataException($"{path}: {errors[0].Message} (line {errors[0].Extent.StartLineNumber}).");
        var table = ast.Find(a => a is HashtableAst, searchNestedScriptBlocks: false) as HashtableAst
                    ?? throw new InvalidDataException($"{path} does not contain a hashtable.");
        return (Hashtable)table.SafeGetValue();
    }

    /// <summary>The problems with the manifest's CmdletsToExport compared with the cmdlets the assembly defines.</summary>
    public static List<string> CompareExports(string manifestPath, IEnumerable<string> cmdlets)
    {
        var manifest = Read(manifestPath);
        var declared = manifest["CmdletsToExport"] switch
        {
            object[] many => many.Select(o => o.ToString()!).ToList(),
            string one => new List<string> { one },
            _ => new List<string>(),
        };
        var problems = new List<string>();
        if (declared.Any(d => d.Contains('*')))
            problems.Add($"{manifestPath}: CmdletsToExport must list cmdlets by name, without wildcards.");
        var actual = cmdlets.ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var missing in actual.Where(a => !declared.Contains(a, StringComparer.OrdinalIgnoreCase)).Order())
            problems.Add($"{manifestPath}: CmdletsToExport lacks {missing}, which LoraPS.dll defines. Add it.");
        foreach (var extra in declared.Where(d => !d.Contains('*') && !actual.Contains(d)).Order())
            problems.Add($"{manifestPath}: CmdletsToExport lists {extra}, which LoraPS.dll does not define. Remove it.");
        return problems;
    }
}
