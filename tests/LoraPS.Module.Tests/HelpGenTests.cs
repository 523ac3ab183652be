using System.Management.Automation;
using System.Xml.Linq;
using LoraPS.HelpGen;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>The build-time help generator, on the test cmdlets (one documented, the rest not).</summary>
public sealed class HelpGenTests : IDisposable
{
    readonly System.Management.Automation.Runspaces.Runspace _runspace = TestRunspaces.Create();
    readonly XmlDocs _docs = new(new[] { Path.Combine(AppContext.BaseDirectory, "LoraPS.Module.Tests.xml"),
                                         Path.Combine(ModuleAssemblies.ModuleFolder, "LoraPS.Core.xml") });

    public void Dispose() => _runspace.Dispose();

    CmdletInfo Cmdlet(string name)
    {
        using var ps = PowerShell.Create(_runspace);
        return ps.AddCommand("Get-Command").AddParameter("Name", name).Invoke<CmdletInfo>().Single();
    }

    [Fact]
    public void DocumentedCmdletBecomesCompleteHelp()
    {
        var builder = new CommandHelpBuilder(_docs);
        _docs.CrefNames[typeof(TestItemsCommand).FullName!] = "Test-LoraItems";
        var help = builder.Build(Cmdlet("Test-LoraDocumented"));
        Assert.Empty(builder.Problems);
        Assert.Equal("A fully documented cmdlet for the help generator's tests.", help.Synopsis);
        Assert.Equal("The name, as in Test-LoraItems.", help.Parameters.Single(p => p.Name == "Name").Description[0]);

        var name = help.Parameters.Single(p => p.Name == "Name");
        Assert.True(name.Required);
        Assert.Equal("0", name.Position);
        Assert.Equal("True (ByValue)", name.PipelineInput);
        Assert.Equal(new[] { "N" }, name.Aliases);
        Assert.Equal("\"x\".", name.DefaultValue);
        Assert.Contains("Friday", help.Parameters.Single(p => p.Name == "Day").AcceptedValues);
        Assert.True(help.Parameters.Single(p => p.Name == "Path").Globbing);
        Assert.True(help.Parameters.Single(p => p.Name == "Path").VariableLength);
        Assert.True(help.Parameters.Single(p => p.Name == "Force").IsSwitch);
        // ShouldProcess parameters get the standard text; common parameters are left to Get-Help.
        Assert.Contains(help.Parameters, p => p.Name == "WhatIf" && p.Description[0].Contains("not run"));
        Assert.DoesNotContain(help.Parameters, p => p.Name == "Verbose");

        var example = Assert.Single(help.Examples);
        Assert.Equal("Example 1: Run it", example.Title);
        Assert.Equal("Test-LoraDocumented -Name a\nTest-LoraDocumented -Name b", example.Code);
        Assert.Equal(new[] { "Runs it twice." }, example.Remarks);
        Assert.Contains(help.Links, l => l.Text == "LoRA paper" && l.Uri == "https://example.org/lora");
        Assert.Contains(help.Links, l => l.Text == "about_LoraPS");
        Assert.Equal("LoraPS.Runtime.RuntimeInfo", Assert.Single(help.Outputs).TypeName);
        Assert.Equal("System.String", Assert.Single(help.Inputs).TypeName);
    }

    [Fact]
    public void MissingDocsAreReportedPerCmdletAndParameter()
    {
        var builder = new CommandHelpBuilder(_docs);
        builder.Build(Cmdlet("Test-LoraPath"));
        Assert.Contains(builder.Problems, p => p.Contains("Test-LoraPath") && p.Contains("<summary>") && p.Contains("synopsis"));
        Assert.Contains(builder.Problems, p => p.Contains("<remarks>"));
        Assert.Contains(builder.Problems, p => p.Contains("<example>"));
        Assert.Contains(builder.Problems, p => p.Contains("-LiteralPath"));
        Assert.Contains(builder.Problems, p => p.Contains("-Single"));
    }

    [Fact]
    public void MamlHasTheShapeGetHelpReads()
    {
        var builder = new CommandHelpBuilder(_docs);
        var maml = MamlWriter.Write(new[] { builder.Build(Cmdlet("Test-LoraDocumented")) });
        XNamespace command = "http://schemas.microsoft.com/maml/dev/command/2004/10", maml_ = "http://schemas.microsoft.com/maml/2004/10";
        var c = maml.Root!.Element(command + "command")!;
        Assert.Equal("Test-LoraDocumented", c.Element(command + "details")!.Element(command + "name")!.Value);
        var syntaxParams = c.Element(command + "syntax")!.Descendants(command + "parameter").ToList();
        // A switch is bare in the syntax.
        Assert.Null(syntaxParams.Single(p => p.Element(maml_ + "name")!.Value == "Force").Element(command + "parameterValue"));
        Assert.Equal("String", syntaxParams.Single(p => p.Element(maml_ + "name")!.Value == "Name").Element(command + "parameterValue")!.Value);
        Assert.Single(c.Element(command + "examples")!.Elements(command + "example"));
    }

    [Fact]
    public void GeneratedHelpInTheModuleMatchesTheAssembly()
    {
        var maml = XDocument.Load(Path.Combine(ModuleAssemblies.ModuleFolder, "en-US", "LoraPS.dll-Help.xml"));
        XNamespace command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
        var names = maml.Descendants(command + "details").Select(d => d.Element(command + "name")!.Value).Order(StringComparer.OrdinalIgnoreCase);
        Assert.Equal(ManifestTests.CmdletsInAssembly(), names);
    }

    [Fact]
    public void ManifestCheckFindsMissingExtraAndWildcardExports()
    {
        string psd1 = Path.Combine(Path.GetTempPath(), $"loraps-{Guid.NewGuid():N}.psd1");
        File.WriteAllText(psd1, "@{ CmdletsToExport = @('Get-LoraRuntime', 'Get-LoraGone', 'Get-*') }");
        try
        {
            var problems = ManifestCheck.CompareExports(psd1, new[] { "Get-LoraRuntime", "New-LoraThing" });
            Assert.Contains(problems, p => p.Contains("without wildcards"));
            Assert.Contains(problems, p => p.Contains("lacks New-LoraThing"));
            Assert.Contains(problems, p => p.Contains("lists Get-LoraGone"));
            Assert.Empty(ManifestCheck.CompareExports(ModuleAssemblies.Manifest, ManifestTests.CmdletsInAssembly()));
        }
        finally { File.Delete(psd1); }
    }

    [Fact]
    public void AboutTopicTemplateNeedsItsPlaceholder()
    {
        var help = new CommandHelp("Get-X", "Get", "X", "Gets X.", new[] { "d" }, [], [], [], [], [], []);
        Assert.Contains("    Get-X  Gets X.", "    " + AboutTopic.Fill("{{COMMANDS}}", new[] { help }));
        Assert.Throws<InvalidDataException>(() => AboutTopic.Fill("no placeholder", new[] { help }));
    }
}
