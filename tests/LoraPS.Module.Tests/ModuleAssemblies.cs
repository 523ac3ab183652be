using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.Loader;
using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: Xunit.TestFramework("LoraPS.Module.Tests.ModuleTestFramework", "LoraPS.Module.Tests")]

namespace LoraPS.Module.Tests;

/// <summary>Where the built module is, and the resolver that loads its assemblies from there.</summary>
public static class ModuleAssemblies
{
    public static string RepoRoot { get; } = FindRepoRoot();
    public static string ModuleFolder { get; } = Path.Combine(RepoRoot, "out", "LoraPS");
    public static string Manifest { get; } = Path.Combine(ModuleFolder, "LoraPS.psd1");

    /// <summary>Debug or Release: the configuration these tests were built in (bin/&lt;config&gt;/net10.0/).</summary>
    public static string Configuration { get; } = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/', '\\')).Parent!.Name;

    /// <summary>
    /// LoraPS, LoraPS.Core and their dependencies are not copied into the test folder; resolve them from the
    /// module folder, as pwsh's Import-Module does.
    /// </summary>
    static int _initialized;

    [ModuleInitializer]
    internal static void Initialize()
    {
        if (Interlocked.Exchange(ref _initialized, 1) == 1) return;
        AssemblyLoadContext.Default.Resolving += (context, name) =>
        {
            string candidate = Path.Combine(ModuleFolder, name.Name + ".dll");
            return File.Exists(candidate) ? context.LoadFromAssemblyPath(candidate) : null;
        };
    }

    static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "LoraPS.sln"))) return dir.FullName;
        throw new InvalidOperationException($"No LoraPS.sln above {AppContext.BaseDirectory}.");
    }
}

/// <summary>
/// xunit reflects over the test types (which derive from LoraCmdlet) before any test code runs; the framework is
/// created first, so it installs the resolver for the module's assemblies.
/// </summary>
public sealed class ModuleTestFramework : XunitTestFramework
{
    public ModuleTestFramework(IMessageSink messageSink) : base(messageSink) => ModuleAssemblies.Initialize();
}
