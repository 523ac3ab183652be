using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using TorchSharp;

namespace LoraPS.Runtime;

/// <summary>Takes a <see cref="RuntimeInfo"/> snapshot. Touching torch here loads the native backend if it is not loaded yet.</summary>
public static class RuntimeInspector
{
    /// <summary>Inspects the running process.</summary>
    /// <param name="moduleFolder">Folder of the PowerShell module, when called from it.</param>
    /// <exception cref="InvalidOperationException">libtorch could not be loaded; the message says where it was looked for.</exception>
    public static RuntimeInfo Inspect(string? moduleFolder = null)
    {
        var (torchThreads, interopThreads, cuda, libtorch) = QueryTorch();
        var cpu = CpuFeatureSet.Detect();
        var (peak, current) = ProcessMemory();
        return new RuntimeInfo
        {
            LoraPSVersion = InformationalVersion(typeof(RuntimeInspector).Assembly),
            TorchSharpVersion = InformationalVersion(typeof(torch).Assembly),
            LibTorchVersion = libtorch,
            TorchThreads = torchThreads,
            TorchInteropThreads = interopThreads,
            LogicalProcessors = Environment.ProcessorCount,
            CudaAvailable = cuda,
            CpuModel = cpu.Model.Length > 0 ? cpu.Model : RuntimeInformation.ProcessArchitecture.ToString(),
            CpuFeatures = cpu.Features,
            Bf16FastPath = cpu.Bf16FastPath,
            PeakMemoryBytes = peak,
            WorkingSetBytes = current,
            DotNetVersion = RuntimeInformation.FrameworkDescription,
            OSDescription = RuntimeInformation.OSDescription,
            ModuleFolder = moduleFolder,
        };
    }

    static (int threads, int interop, bool cuda, string? libtorch) QueryTorch()
    {
        try
        {
            return (torch.get_num_threads(), torch.get_num_interop_threads(), torch.cuda.is_available(),
                    NormalizeVersion(torch.__version__));
        }
        catch (TypeInitializationException e)
        {
            // TorchSharp's static constructor loads libtorch; its message already lists every path it tried.
            string folder = Path.GetDirectoryName(typeof(torch).Assembly.Location) ?? "?";
            throw new InvalidOperationException(
                $"libtorch could not be loaded from {folder}: {e.InnerException?.Message ?? e.Message} " +
                "Rebuild the LoraPS module so that the native libraries sit beside TorchSharp.dll.", e);
        }
    }

    /// <summary>(peak, current) resident bytes. Linux: VmHWM/VmRSS from /proc/self/status, which count what the kernel
    /// really mapped for libtorch's allocations; elsewhere the .NET process counters.</summary>
    public static (long Peak, long Current) ProcessMemory()
    {
        const string status = "/proc/self/status";
        if (OperatingSystem.IsLinux() && File.Exists(status))
        {
            var parsed = ParseProcStatus(File.ReadAllText(status));
            if (parsed.Peak > 0) return parsed;
        }
        using var self = Process.GetCurrentProcess();
        return (self.PeakWorkingSet64, self.WorkingSet64);
    }

    /// <summary>Reads VmHWM and VmRSS (in kB) from the text of /proc/[pid]/status; 0 where absent.</summary>
    public static (long Peak, long Current) ParseProcStatus(string text)
    {
        long peak = 0, current = 0;
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) peak = Kilobytes(line);
            else if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) current = Kilobytes(line);
        }
        return (peak, current);

        static long Kilobytes(string line)
        {
            var parts = line.Split(' ', '\t').Where(p => p.Length > 0).ToArray();
            return parts.Length >= 2 && long.TryParse(parts[1], out long kb) ? kb * 1024 : 0;
        }
    }

    /// <summary>"0.107.0+abc123" → "0.107.0": build metadata is noise in a version report.</summary>
    static string InformationalVersion(Assembly assembly)
    {
        string? v = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
                    ?? assembly.GetName().Version?.ToString();
        if (v is null) return "unknown";
        int plus = v.IndexOf('+');
        return plus >= 0 ? v[..plus] : v;
    }

    /// <summary>TorchSharp reports libtorch as a four-part assembly version ("2.10.0.0"); torch says "2.10.0".</summary>
    static string? NormalizeVersion(string? v) =>
        v is not null && Version.TryParse(v, out var parsed) ? $"{parsed.Major}.{parsed.Minor}.{Math.Max(parsed.Build, 0)}" : v;
}
