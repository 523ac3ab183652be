using System.Collections.ObjectModel;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>One runspace with out/LoraPS imported by its manifest, shared by the tests of a collection.</summary>
public sealed class RunspaceFixture : IDisposable
{
    public Runspace Runspace { get; }
    public PSModuleInfo Module { get; }

    public RunspaceFixture()
    {
        Assert.True(File.Exists(ModuleAssemblies.Manifest), $"The module is not laid out at {ModuleAssemblies.Manifest}.");
        Runspace = RunspaceFactory.CreateRunspace(InitialSessionState.CreateDefault2());
        Runspace.Open();
        using var ps = PowerShell.Create(Runspace);
        ps.AddCommand("Import-Module").AddParameter("Name", ModuleAssemblies.Manifest).AddParameter("PassThru").AddParameter("ErrorAction", "Stop");
        Module = ps.Invoke<PSModuleInfo>().Single();
    }

    /// <summary>Runs a script; returns its output and the errors it wrote (a terminating error throws).</summary>
    public (Collection<PSObject> Output, IReadOnlyList<ErrorRecord> Errors) Invoke(string script)
    {
        lock (this)
        {
            using var ps = PowerShell.Create(Runspace);
            ps.AddScript(script);
            var output = ps.Invoke();
            return (output, ps.Streams.Error.ToList());
        }
    }

    public void Dispose() => Runspace.Dispose();
}

[CollectionDefinition(Name)]
public sealed class ModuleCollection : ICollectionFixture<RunspaceFixture>
{
    public const string Name = "LoraPS module";
}
