using System.Management.Automation;
using System.Management.Automation.Runspaces;
using LoraPS.HelpGen;

// Usage: LoraPS.HelpGen --module <LoraPS.dll> --docs <a.xml;b.xml> --manifest <LoraPS.psd1>
//                       --about <about_LoraPS.help.txt template> --out <folder for en-US files>
// Exit code 1 with MSBuild-style "error LPSHELP…" lines when a cmdlet, parameter or output type lacks docs.
var options = ParseArgs(args);
string modulePath = Path.GetFullPath(options["--module"]);
string outDir = Path.GetFullPath(options["--out"]);

var docs = new XmlDocs(options["--docs"].Split(';', StringSplitOptions.RemoveEmptyEntries));
var cmdlets = LoadCmdlets(modulePath);
foreach (var c in cmdlets) docs.CrefNames[c.ImplementingType.FullName!] = c.Name;

var builder = new CommandHelpBuilder(docs);
var help = cmdlets.Select(builder.Build).ToList();
var problems = new List<string>(builder.Problems);
if (options.TryGetValue("--manifest", out var manifest))
    problems.AddRange(ManifestCheck.CompareExports(manifest, cmdlets.Select(c => c.Name)));
if (problems.Count > 0)
{
    foreach (var p in problems) Console.Error.WriteLine($"LoraPS.HelpGen : error LPSHELP001: {p}");
    Console.Error.WriteLine("LoraPS.HelpGen : error LPSHELP001: Help is generated from XML doc comments; see src/HelpGen/README.md.");
    return 1;
}

Directory.CreateDirectory(outDir);
string helpFile = Path.Combine(outDir, Path.GetFileName(modulePath) + "-Help.xml");
MamlWriter.Write(help).Save(helpFile);
if (options.TryGetValue("--about", out var aboutTemplate))
    File.WriteAllText(Path.Combine(outDir, Path.GetFileName(aboutTemplate)), AboutTopic.Fill(File.ReadAllText(aboutTemplate), help));
Console.WriteLine($"LoraPS.HelpGen: help for {help.Count} cmdlet(s) -> {helpFile}");
return 0;

static List<CmdletInfo> LoadCmdlets(string modulePath)
{
    // PowerShell's own metadata (parameter sets, positions, pipeline binding) is what Get-Help must describe,
    // so the module is imported into a runspace rather than reflected over by hand.
    using var runspace = RunspaceFactory.CreateRunspace(InitialSessionState.CreateDefault2());
    runspace.Open();
    using var ps = PowerShell.Create(runspace);
    ps.AddCommand("Import-Module").AddParameter("Name", modulePath).AddParameter("PassThru");
    var module = ps.Invoke<PSModuleInfo>().Single();
    return module.ExportedCmdlets.Values.OrderBy(c => c.Name, StringComparer.OrdinalIgnoreCase).ToList();
}

static Dictionary<string, string> ParseArgs(string[] args)
{
    var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
    for (int i = 0; i + 1 < args.Length; i += 2) result[args[i]] = args[i + 1];
    foreach (var required in new[] { "--module", "--docs", "--out" })
        if (!result.ContainsKey(required)) throw new ArgumentException($"HelpGen needs {required}. Usage: --module <dll> --docs <xml;xml> --out <dir> [--manifest <psd1>] [--about <template>]");
    return result;
}
