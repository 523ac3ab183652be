using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace LoraPS.Runtime;

/// <summary>The CPU model and the SIMD features relevant to libtorch's CPU kernels.</summary>
public sealed record CpuFeatureSet(string Model, IReadOnlyList<string> Features)
{
    /// <summary>
    /// The flags we report, in this order. bf16 is only fast with avx512_bf16 (Cooper Lake, Zen 4) or amx_bf16
    /// (Sapphire Rapids); avx512_fp16 and the VNNI/AMX int8 flags matter for fp16 and int8 kernels.
    /// </summary>
    public static readonly IReadOnlyList<string> Relevant = new[]
    {
        "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
        "amx_tile", "amx_bf16", "amx_int8", "asimd", "bf16", "sve",
    };

    /// <summary>True when the CPU multiplies bf16 natively (see <see cref="RuntimeInfo.Bf16FastPath"/>).</summary>
    public bool Bf16FastPath => Features.Contains("avx512_bf16") || Features.Contains("amx_bf16");

    /// <summary>Reads /proc/cpuinfo on Linux; elsewhere asks the .NET hardware intrinsics.</summary>
    public static CpuFeatureSet Detect()
    {
        const string cpuinfo = "/proc/cpuinfo";
        if (OperatingSystem.IsLinux() && File.Exists(cpuinfo))
        {
            var parsed = ParseCpuInfo(File.ReadAllText(cpuinfo));
            if (parsed.Features.Count > 0 || parsed.Model.Length > 0) return parsed;
        }
        return FromIntrinsics();
    }

    /// <summary>
    /// Parses the text of /proc/cpuinfo. x86 kernels list features under "flags" and the name under "model name";
    /// arm64 kernels use "Features" and often give no model name at all.
    /// </summary>
    public static CpuFeatureSet ParseCpuInfo(string text)
    {
        string model = "";
        var flags = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            int colon = line.IndexOf(':');
            if (colon < 0) continue;
            string key = line[..colon].Trim(), value = line[(colon + 1)..].Trim();
            if (model.Length == 0 && (key == "model name" || key == "Model" || key == "Hardware")) model = value;
            // Only the first processor's flags: every core of one machine reports the same set.
            if (flags.Count == 0 && (key == "flags" || key == "Features"))
                flags.UnionWith(value.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        }
        return new CpuFeatureSet(model, Relevant.Where(flags.Contains).ToArray());
    }

    static CpuFeatureSet FromIntrinsics()
    {
        var features = new List<string>();
        if (Avx.IsSupported) features.Add("avx");
        if (Avx2.IsSupported) features.Add("avx2");
        if (Fma.IsSupported) features.Add("fma");
        if (Avx512F.IsSupported) features.Add("avx512f");
        if (Avx512BW.IsSupported) features.Add("avx512bw");
        if (System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported) features.Add("asimd");
        // .NET 8 has no query for AVX512_BF16 or AMX, so off Linux we cannot claim a bf16 fast path.
        return new CpuFeatureSet(RuntimeInformation.ProcessArchitecture.ToString(), features);
    }
}
