namespace LoraPS.Runtime;

/// <summary>
/// What the LoraPS engine runs on: component versions, torch threading, CPU features that decide whether bf16 is
/// fast, and the process's memory. One snapshot, taken by <see cref="RuntimeInspector.Inspect"/>.
/// </summary>
public sealed record RuntimeInfo
{
    /// <summary>Version of LoraPS (the engine assembly, which ships with the module of the same version).</summary>
    public required string LoraPSVersion { get; init; }

    /// <summary>Version of the TorchSharp bindings, without build metadata.</summary>
    public required string TorchSharpVersion { get; init; }

    /// <summary>Version of the native libtorch TorchSharp was built against, or null when TorchSharp does not say.</summary>
    public string? LibTorchVersion { get; init; }

    /// <summary>Threads libtorch uses inside one operator (intra-op parallelism; <c>torch.get_num_threads()</c>).</summary>
    public required int TorchThreads { get; init; }

    /// <summary>Threads libtorch uses to run independent operators concurrently (inter-op parallelism).</summary>
    public required int TorchInteropThreads { get; init; }

    /// <summary>Logical processors the .NET runtime sees (respects container CPU limits).</summary>
    public required int LogicalProcessors { get; init; }

    /// <summary>Whether a CUDA device is usable through the loaded libtorch (always false with the CPU build).</summary>
    public required bool CudaAvailable { get; init; }

    /// <summary>CPU model name as the OS reports it, or the process architecture when it does not.</summary>
    public required string CpuModel { get; init; }

    /// <summary>The SIMD features that matter for libtorch kernels (e.g. avx2, avx512f, avx512_bf16, amx_bf16).</summary>
    public required IReadOnlyList<string> CpuFeatures { get; init; }

    /// <summary>
    /// True when the CPU has native bf16 arithmetic (AVX512_BF16 or AMX-BF16). Without it libtorch emulates bf16
    /// by converting through fp32, so bf16 saves memory but is slower than fp32.
    /// </summary>
    public required bool Bf16FastPath { get; init; }

    /// <summary>Peak resident memory of this process in bytes (VmHWM on Linux, peak working set elsewhere).</summary>
    public required long PeakMemoryBytes { get; init; }

    /// <summary>Current resident memory of this process in bytes.</summary>
    public required long WorkingSetBytes { get; init; }

    /// <summary>The .NET runtime running the process, e.g. ".NET 8.0.11".</summary>
    public required string DotNetVersion { get; init; }

    /// <summary>Operating system description.</summary>
    public required string OSDescription { get; init; }

    /// <summary>Folder the LoraPS module was loaded from, or null when the engine is used without the module.</summary>
    public string? ModuleFolder { get; init; }
}
