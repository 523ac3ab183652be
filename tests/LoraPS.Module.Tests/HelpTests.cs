using System.Management.Automation;
using System.Xml.Linq;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>Every exported cmdlet is documented as Get-Help shows it, from the MAML generated at build time.</summary>
[Collection(ModuleCollection.Name)]
public class HelpTests(RunspaceFixture fixture)
{
    public static TheoryData<string> Cmdlets()
    {
        var data = new TheoryData<string>();
        foreach (var name in ManifestTests.CmdletsInAssembly()) data.Add(name);
        return data;
    }

    static string Text(object? o) => o switch
    {
        null => "",
        PSObject p when p.BaseObject is string s => s,
        PSObject p => string.Join("\n", (p.Properties["Text"]?.Value as object[] ?? new object[] { p.Properties["Text"]?.Value ?? p.ToString() })
                                           .Select(t => (t as PSObject)?.Properties["Text"]?.Value?.ToString() ?? t?.ToString())),
        object[] many => string.Join("\n", many.Select(Text)),
        _ => o.ToString() ?? "",
    };

    [Theory]
    [MemberData(nameof(Cmdlets))]
    public void CmdletHasSynopsisDescriptionExamplesAndParameterHelp(string cmdlet)
    {
        var (output, errors) = fixture.Invoke($"Get-Help -Name {cmdlet} -Full");
        Assert.Empty(errors);
        dynamic help = Assert.Single(output);

        string synopsis = ((string)help.Synopsis).Trim();
        Assert.False(string.IsNullOrWhiteSpace(synopsis));
        // Without a MAML file PowerShell makes the synopsis from the syntax; ours is a sentence.
        Assert.DoesNotContain("[<CommonParameters>]", synopsis);

        var help0 = (PSObject)help;
        string description = Text(help0.Properties["description"]?.Value);
        Assert.True(description.Length > 40, $"{cmdlet}: description is missing or too short: '{description}'");

        var examples = ((PSObject)help0.Properties["examples"].Value).Properties["example"].Value;
        var exampleList = examples is object[] arr ? arr.Cast<PSObject>().ToList() : new List<PSObject> { (PSObject)examples };
        Assert.NotEmpty(exampleList);
        foreach (var example in exampleList)
        {
            Assert.False(string.IsNullOrWhiteSpace(example.Properties["code"].Value?.ToString()), $"{cmdlet}: an example has no code");
            Assert.True(Text(example.Properties["remarks"].Value).Trim().Length > 0, $"{cmdlet}: an example has no remarks");
            Assert.Contains(cmdlet, example.Properties["code"].Value!.ToString());
        }

        var command = (CmdletInfo)fixture.Invoke($"Get-Command -Name {cmdlet}").Output.Single().BaseObject;
        var documented = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (help0.Properties["parameters"]?.Value is PSObject parameters && parameters.Properties["parameter"]?.Value is { } ps)
            foreach (var p in ps is object[] many ? many.Cast<PSObject>() : new[] { (PSObject)ps })
                documented[p.Properties["name"].Value.ToString()!] = Text(p.Properties["description"]?.Value);
        foreach (var name in command.Parameters.Keys.Where(n => !Cmdlet.CommonParameters.Contains(n)))
        {
            Assert.True(documented.TryGetValue(name, out var text), $"{cmdlet}: parameter -{name} is not in the help");
            Assert.False(string.IsNullOrWhiteSpace(text), $"{cmdlet}: parameter -{name} has no description");
        }
    }

    [Theory]
    [MemberData(nameof(Cmdlets))]
    public void EveryOutputTypeHasATableView(string cmdlet)
    {
        var command = (CmdletInfo)fixture.Invoke($"Get-Command -Name {cmdlet}").Output.Single().BaseObject;
        var format = XDocument.Load(Path.Combine(ModuleAssemblies.ModuleFolder, "LoraPS.Format.ps1xml"));
        var tableTypes = format.Descendants("View").Where(v => v.Element("TableControl") is not null)
                               .SelectMany(v => v.Descendants("TypeName")).Select(t => t.Value.Trim()).ToHashSet();
        // Only a Remove-* cmdlet may emit nothing; everything else must declare what it returns.
        if (command.Verb != "Remove") Assert.NotEmpty(command.OutputType);
        foreach (var type in command.OutputType)
            Assert.True(tableTypes.Contains(type.Name), $"{cmdlet}: output type {type.Name} has no table view in LoraPS.Format.ps1xml");
    }

    [Fact]
    public void AboutTopicListsEveryCmdlet()
    {
        var (output, errors) = fixture.Invoke("Get-Help about_LoraPS");
        Assert.Empty(errors);
        string text = string.Join("\n", output.Select(o => o.ToString()));
        Assert.Contains("about_LoraPS", text);
        Assert.DoesNotContain("{{COMMANDS}}", text);
        foreach (var cmdlet in ManifestTests.CmdletsInAssembly()) Assert.Contains(cmdlet, text);
    }
}
