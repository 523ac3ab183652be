using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>
/// The lookup tables ("codes", "quant maps") of bitsandbytes, value for value in float32. A quantized element is an
/// index into one of these tables; its value is <c>table[index] · absmax</c> of its block.
/// </summary>
/// <remarks>
/// Sources: bitsandbytes <c>functional.py</c> (<c>get_4bit_type</c>, <c>create_normal_map</c>,
/// <c>create_dynamic_map</c>), 0.43–0.49. The tables are part of the on-disk format: bnb stores them beside every 4-bit
/// weight as <c>weight.quant_map</c> and <c>weight.nested_quant_map</c>.
/// </remarks>
public static class Codebooks
{
    /// <summary>
    /// NF4 (<c>get_4bit_type("nf4")</c>), index = 4-bit code, ascending. Built by
    /// <c>create_normal_map(offset=0.9677083, use_extra_value=True)</c>: 8 positive and 7 negative N(0,1) quantiles plus
    /// an exact zero, divided by the largest. Asymmetric on purpose, so that zero is representable.
    /// </summary>
    public static IReadOnlyList<float> NF4 { get; } = Array.AsReadOnly(new[]
    {
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    });

    /// <summary>
    /// FP4 (<c>get_4bit_type("fp4")</c>) in code order: bit 3 is the sign, then a 2-bit exponent with bias 2 and one
    /// mantissa bit; code 0b0001 is the subnormal 0.0625. The raw values are divided by their maximum, 12, in float32.
    /// The table is not sorted.
    /// </summary>
    public static IReadOnlyList<float> FP4 { get; } = Array.AsReadOnly(CreateFp4());

    /// <summary>The signed 8-bit dynamic map (<c>create_dynamic_map(signed=True)</c>): double quantization and Adam's first moment.</summary>
    public static IReadOnlyList<float> DynamicSigned => dynamicSigned.Value;

    /// <summary>The unsigned 8-bit dynamic map (<c>create_dynamic_map(signed=False)</c>): 8-bit Adam's second moment.</summary>
    public static IReadOnlyList<float> DynamicUnsigned => dynamicUnsigned.Value;

    private static readonly Lazy<IReadOnlyList<float>> dynamicSigned = new(() => Array.AsReadOnly(CreateDynamicMap(signed: true)));
    private static readonly Lazy<IReadOnlyList<float>> dynamicUnsigned = new(() => Array.AsReadOnly(CreateDynamicMap(signed: false)));

    /// <summary>The 16-entry table of a 4-bit type; Int8 has no table (it is linear).</summary>
    public static IReadOnlyList<float> For(QuantType type) => type switch
    {
        QuantType.NF4 => NF4,
        QuantType.FP4 => FP4,
        QuantType.Int8 => throw new ArgumentException("Int8 is linear row-wise quantization and has no codebook; only NF4 and FP4 do.", nameof(type)),
        _ => throw QuantTypes.Unknown(type),
    };

    private static float[] CreateFp4()
    {
        // bnb writes the list as [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, ...]. Python's "-0" is the integer zero,
        // so code 8 is +0.0, not -0.0: that is what bnb stores in quant_map.
        float[] raw = [0f, 0.0625f, 8f, 12f, 4f, 6f, 2f, 3f, 0f, -0.0625f, -8f, -12f, -4f, -6f, -2f, -3f];
        return raw.Select(v => v / 12f).ToArray();
    }

    /// <summary>
    /// bitsandbytes' dynamic-tree map ("8-Bit Approximations for Parallelism in Deep Learning"), built exactly as
    /// <c>create_dynamic_map</c> does, with the same float32 torch operations: for exponent level i, the midpoints of
    /// <c>linspace(0.1, 1, 2^k + 1)</c> scaled by <c>10^(i − (maxExponentBits − 1))</c>, both signs when signed, then
    /// 0 and 1, sorted. The default signed map runs from −0.99296875 to 1 with 0 at index 127.
    /// </summary>
    public static float[] CreateDynamicMap(bool signed = true, int maxExponentBits = 7, int totalBits = 8)
    {
        if (totalBits is < 2 or > 8)
        {
            throw new ArgumentOutOfRangeException(nameof(totalBits), totalBits, "The dynamic map has 2 to 8 bits (its codes are stored as bytes).");
        }
        // bnb computes non_sign_bits = total_bits - 1 for the unsigned map too, so one bit is always spent on the sign.
        int nonSignBits = totalBits - 1;
        if (maxExponentBits < 1 || maxExponentBits > nonSignBits)
        {
            throw new ArgumentOutOfRangeException(nameof(maxExponentBits), maxExponentBits, $"Use 1 to {nonSignBits} exponent bits for a {totalBits}-bit map.");
        }
        using var scope = NewDisposeScope();
        var data = new List<float>();
        int additionalItems = (1 << (nonSignBits - maxExponentBits)) - 1;
        for (int i = 0; i < maxExponentBits; i++)
        {
            long fractionItems = signed ? (1L << (i + nonSignBits - maxExponentBits)) + 1 : (1L << (i + nonSignBits - maxExponentBits + 1)) + 1;
            AddLevel(data, fractionItems, LevelScale(maxExponentBits, i), signed);
        }
        if (additionalItems > 0)
        {
            // bnb reuses the loop variable here, so the extra items sit at the last (largest) exponent level.
            AddLevel(data, additionalItems + 1, LevelScale(maxExponentBits, maxExponentBits - 1), signed);
        }
        data.Add(0f);
        data.Add(1f);
        if (data.Count != 1 << totalBits)
        {
            throw new InvalidOperationException($"The dynamic map came out with {data.Count} entries instead of {1 << totalBits}.");
        }
        while (data.Count < 256 && totalBits < 8)
        {
            data.Add(0f);
        }
        data.Sort();
        return data.ToArray();
    }

    // Python evaluates 10 ** (-(max_exponent_bits - 1) + i) as a float (an int for exponent 0); torch then rounds the
    // scalar to float32 inside the multiplication, as TorchSharp's Scalar multiply does.
    private static double LevelScale(int maxExponentBits, int i) => Math.Pow(10, -(maxExponentBits - 1) + i);

    private static void AddLevel(List<float> data, long items, double scale, bool signed)
    {
        var boundaries = linspace(0.1, 1.0, items, dtype: ScalarType.Float32);
        var means = (boundaries.narrow(0, 0, items - 1) + boundaries.narrow(0, 1, items - 1)) / 2.0;
        data.AddRange((means * scale).data<float>());
        if (signed)
        {
            data.AddRange((means * -scale).data<float>());
        }
    }

    private static readonly ConcurrentDictionary<(string Name, string Device), Tensor> deviceTables = new();

    /// <summary>
    /// A float32 tensor of <paramref name="values"/> on <paramref name="device"/>, cached for the process and outside any
    /// dispose scope. Never dispose it.
    /// </summary>
    internal static Tensor CachedTensor(string name, IReadOnlyList<float> values, Device device) =>
        deviceTables.GetOrAdd((name, device.ToString()), _ => Detached(tensor(values.ToArray(), ScalarType.Float32, device)));

    internal static Tensor Detached(Tensor t)
    {
        t.DetachFromDisposeScope();
        return t;
    }
}
