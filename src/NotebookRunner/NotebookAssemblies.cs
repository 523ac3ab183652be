using System.Runtime.CompilerServices;
using System.Runtime.Loader;

namespace LoraPS.NotebookRunner;

/// <summary>
/// Finds the built module (out/LoraPS) and loads LoraPS.Core, TorchSharp and their dependencies from there, as
/// pwsh's Import-Module does: they are compiled against but not copied beside the runner, so each is loaded once.
/// </summary>
public static class NotebookAssemblies
{
    /// <summary>The module manifest: $LORAPS_MODULE (a folder or a .psd1), else out/LoraPS above the runner; null when not built.</summary>
    public static string? ModuleManifest { get; } = FindModule();

    static int _initialized;

    [ModuleInitializer]
    internal static void Initialize()
    {
        if (Interlocked.Exchange(ref _initialized, 1) == 1 || ModuleManifest is null) return;
        string folder = Path.GetDirectoryName(ModuleManifest)!;
        AssemblyLoadContext.Default.Resolving += (context, name) =>
        {
            string candidate = Path.Combine(folder, name.Name + ".dll");
            return File.Exists(candidate) ? context.LoadFromAssemblyPath(candidate) : null;
        };
    }

    /// <summary>
    /// Sets torch's intra-op threads. Here rather than at the call site: the resolver above must be installed before any
    /// method that names a TorchSharp type is compiled.
    /// </summary>
    public static void SetTorchThreads(int threads) => TorchSharp.torch.set_num_threads(threads);

    static string? FindModule()
    {
        if (Environment.GetEnvironmentVariable("LORAPS_MODULE") is { Length: > 0 } configured)
        {
            string full = Path.GetFullPath(configured);
            return Directory.Exists(full) ? Path.Combine(full, "LoraPS.psd1") : full;
        }
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "out", "LoraPS", "LoraPS.psd1");
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }
}
