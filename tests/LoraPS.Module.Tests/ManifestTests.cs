using System.Collections;
using System.Management.Automation;
using System.Reflection;
using LoraPS.HelpGen;
using LoraPS.Module.Commands;
using Xunit;

namespace LoraPS.Module.Tests;

[Collection(ModuleCollection.Name)]
public class ManifestTests(RunspaceFixture fixture)
{
    static Hashtable Manifest => ManifestCheck.Read(ModuleAssemblies.Manifest);

    public static string[] CmdletsInAssembly() =>
        typeof(GetLoraRuntimeCommand).Assembly.GetExportedTypes()
            .Where(t => !t.IsAbstract && t.GetCustomAttribute<CmdletAttribute>() is not null)
            .Select(t => t.GetCustomAttribute<CmdletAttribute>()!)
            .Select(a => $"{a.VerbName}-{a.NounName}")
            .Order(StringComparer.OrdinalIgnoreCase)
            .ToArray();

    [Fact]
    public void ManifestExportsExactlyTheCmdletsOfTheAssembly()
    {
        var declared = ((object[])Manifest["CmdletsToExport"]!).Cast<string>().Order(StringComparer.OrdinalIgnoreCase).ToArray();
        Assert.Equal(CmdletsInAssembly(), declared);
        Assert.Equal(declared, fixture.Module.ExportedCmdlets.Keys.Order(StringComparer.OrdinalIgnoreCase).ToArray());
        Assert.Contains("Get-LoraRuntime", declared);
    }

    [Fact]
    public void ManifestIsExplicitAndTargetsPowerShell74Core()
    {
        var m = Manifest;
        Assert.Equal("LoraPS.dll", m["RootModule"]);
        Assert.Equal("7.4", m["PowerShellVersion"]);
        Assert.Equal(new object[] { "Core" }, (object[])m["CompatiblePSEditions"]!);
        Assert.Equal(new object[] { "LoraPS.Format.ps1xml" }, (object[])m["FormatsToProcess"]!);
        foreach (var key in new[] { "CmdletsToExport", "FunctionsToExport", "AliasesToExport", "VariablesToExport" })
        {
            var value = m[key];
            Assert.True(value is object[], $"{key} must be an explicit list");
            Assert.DoesNotContain((object[])value!, v => v.ToString()!.Contains('*'));
        }
    }

    [Fact]
    public void ModuleVersionIsStampedFromTheBuild()
    {
        string engine = typeof(LoraPS.Runtime.RuntimeInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0];
        Assert.Equal(engine, Manifest["ModuleVersion"]);
        Assert.Equal(new Version(engine), fixture.Module.Version);
        // The template in the repository is not touched by the build.
        Assert.Contains("ModuleVersion        = '0.0.0'", File.ReadAllText(Path.Combine(ModuleAssemblies.RepoRoot, "LoraPS.psd1")));
    }

    [Fact]
    public void ModuleFolderHoldsTheLayout()
    {
        string dir = ModuleAssemblies.ModuleFolder;
        foreach (var file in new[] { "LoraPS.dll", "LoraPS.Core.dll", "TorchSharp.dll", "Microsoft.ML.Tokenizers.dll", "LoraPS.psd1",
                                     "LoraPS.Format.ps1xml", "en-US/LoraPS.dll-Help.xml", "en-US/about_LoraPS.help.txt" })
            Assert.True(File.Exists(Path.Combine(dir, file)), $"{file} is missing from {dir}");
        if (OperatingSystem.IsLinux())
        {
            Assert.True(File.Exists(Path.Combine(dir, "libLibTorchSharp.so")));
            Assert.True(File.Exists(Path.Combine(dir, "libtorch_cpu.so")));
            // Python bindings and libtorch's test backends are left out; torch still works (RuntimeTests).
            foreach (var unneeded in new[] { "libtorch_python.so", "libjitbackend_test.so", "libtorchbind_test.so",
                                             "libbackend_with_compiler.so", "libnnapi_backend.so", "libaoti_custom_ops.so" })
                Assert.False(File.Exists(Path.Combine(dir, unneeded)), $"{unneeded} should not be in the module");
        }
        Assert.False(File.Exists(Path.Combine(dir, "System.Management.Automation.dll")), "the module must not ship PowerShell itself");
    }

    [Fact]
    public void TestModuleManifestAcceptsTheLaidOutManifest()
    {
        var (output, errors) = fixture.Invoke($"Test-ModuleManifest -Path '{ModuleAssemblies.Manifest}'");
        Assert.Empty(errors);
        var info = (PSModuleInfo)Assert.Single(output).BaseObject;
        Assert.Equal("LoraPS", info.Name);
    }
}
