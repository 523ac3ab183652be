using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>
/// Finds, for float32 values already scaled into [-1, 1], the index of the nearest entry of a codebook with exactly the
/// semantics of bitsandbytes' reference backend: <c>argmin_j |x − code[j]|</c> evaluated in float32, the first index
/// winning ties. One <c>bucketize</c> per element does it.
/// </summary>
/// <remarks>
/// <para>A brute-force argmin needs a [n, table] temporary (16× or 256× the input). Instead, sort the distinct table
/// values u_0 &lt; … &lt; u_m. Between neighbours u_k and u_k+1, the rounded distances fl(x − u_k) and fl(u_k+1 − x)
/// move monotonically in opposite directions as x grows, so the choice flips from u_k to u_k+1 exactly once, at some
/// float32 threshold T_k. <see cref="NearestCode"/> finds every T_k once, by bisection over the floats of the interval
/// using the very float32 comparison argmin makes (including its tie rule). Then for any x the sorted index is the
/// number of thresholds ≤ x: <c>bucketize(x, T, right: true)</c>. Entries that are not neighbours of x never win: an
/// equal rounded distance to them would need two table values closer together than a float32 rounding step.</para>
/// <para>torch's <c>bucketize</c> is a scalar binary search (about 30 ns per element). For the 16-entry 4-bit tables a
/// lookup is 6× faster: split [-1, 1] into uniform bins <c>bin(x) = (int)((x + 1) · S)</c>, fine enough that no bin holds
/// two thresholds; then the sorted index is <c>lowIndex[bin] + (x ≥ split[bin])</c>, where <c>split[bin]</c> is the one
/// threshold inside the bin (or +∞). The bins are derived from the same float32 arithmetic torch performs, so this
/// gives exactly the bucketize result. The 256-entry dynamic maps, with entries 5e-7 apart near zero, keep bucketize.</para>
/// <para>Ties between neighbours go to the smaller original index. For FP4, whose table is not sorted, that is not always
/// the smaller value. Equal values in a table (FP4 has 0 at codes 0 and 8) collapse to their smallest index.</para>
/// <para>This is bit-identical to bnb's reference backend (and to a scalar transcription of it, see the tests). bnb's
/// CUDA kernels decide with hard-coded float thresholds and <c>&gt;</c> instead, which can differ for values within a
/// rounding step of a midpoint; for FP4 the CUDA kernel also gives negative values that round to zero code 8 (−0)
/// where argmin gives code 0. Both dequantize to the same numbers.</para>
/// </remarks>
internal sealed class NearestCode
{
    private readonly float[] thresholds;
    private readonly byte[] originalIndex;
    private readonly bool sortedIsOriginal;
    private readonly Bins? bins;
    private readonly ConcurrentDictionary<string, DeviceTables> perDevice = new();

    // Uniform bins over [-1, 1]: Scale bins per unit, the sorted index at each bin's first float, the threshold inside it.
    private sealed record Bins(int Scale, byte[] LowIndex, float[] Split);

    private sealed record DeviceTables(Tensor Thresholds, Tensor OriginalIndex, Tensor? LowIndex, Tensor? Split);

    public NearestCode(string name, IReadOnlyList<float> table)
    {
        if (table.Count is < 2 or > 256 || table.Any(v => !float.IsFinite(v)))
        {
            throw new ArgumentException($"A codebook needs 2 to 256 finite entries; '{name}' has {table.Count}.", nameof(table));
        }
        Name = name;
        Table = table;
        // For each distinct value keep its smallest index: argmin returns the first of equal distances.
        var distinct = Enumerable.Range(0, table.Count)
            .GroupBy(i => table[i])
            .Select(g => (Value: g.Key, Index: g.Min()))
            .OrderBy(e => e.Value)
            .ToArray();
        if (distinct.Length < 2)
        {
            throw new ArgumentException($"The codebook '{name}' has fewer than two distinct values.", nameof(table));
        }
        originalIndex = distinct.Select(e => (byte)e.Index).ToArray();
        sortedIsOriginal = distinct.Length == table.Count && originalIndex.Select((o, k) => o == k).All(same => same);
        thresholds = new float[distinct.Length - 1];
        for (int k = 0; k < thresholds.Length; k++)
        {
            var (lower, lowerIndex) = distinct[k];
            var (upper, upperIndex) = distinct[k + 1];
            thresholds[k] = FirstWhereUpperWins(lower, upper, upperIndex < lowerIndex);
        }
        bins = TryBuildBins(thresholds);
    }

    public string Name { get; }

    public IReadOnlyList<float> Table { get; }

    /// <summary>True when <see cref="Encode"/> uses the bin lookup rather than bucketize.</summary>
    internal bool UsesBins => bins is not null;

    private static readonly ConcurrentDictionary<string, NearestCode> shared = new();

    /// <summary>The search for a named built-in table, built once per process.</summary>
    public static NearestCode For(string name, IReadOnlyList<float> table) => shared.GetOrAdd(name, _ => new NearestCode(name, table));

    public static NearestCode For(QuantType type) => For(type.ToBitsAndBytesName(), Codebooks.For(type));

    /// <summary>The code of 0.0: what bnb's 4-bit quantizer writes into the padding nibble of an odd-length tensor.</summary>
    public byte CodeOfZero()
    {
        int best = 0;
        for (int j = 1; j < Table.Count; j++)
        {
            if (Math.Abs(Table[j]) < Math.Abs(Table[best]))
            {
                best = j;
            }
        }
        return (byte)best;
    }

    /// <summary>uint8 codes, same shape as <paramref name="scaled"/> (float32, finite).</summary>
    public Tensor Encode(Tensor scaled)
    {
        using var scope = NewDisposeScope();
        var t = Tables(scaled.device);
        Tensor sortedIndex;
        if (bins is not null)
        {
            // Same float32 steps as BinOf: x + 1, times the power-of-two scale, truncated (x + 1 >= 0, so floored).
            var flat = scaled.reshape(-1);
            var bin = flat.add(1).mul_(bins.Scale).to_type(ScalarType.Int32);
            sortedIndex = t.LowIndex!.index_select(0, bin).add_(flat.ge(t.Split!.index_select(0, bin))).view_as(scaled);
        }
        else
        {
            sortedIndex = bucketize(scaled, t.Thresholds, outInt32: true, right: true);
        }
        var codes = sortedIsOriginal
            ? sortedIndex.to_type(ScalarType.Byte)
            : t.OriginalIndex.index_select(0, sortedIndex.reshape(-1).to_type(ScalarType.Int32)).view_as(scaled);
        return codes.MoveToOuterDisposeScope();
    }

    private static int BinOf(float x, int scale) => (int)((x + 1f) * scale);

    // The coarsest power-of-two bin scale (up to 4096 bins per unit) at which no bin holds two thresholds.
    private static Bins? TryBuildBins(float[] thresholds)
    {
        if (thresholds.Length + 1 > byte.MaxValue)
        {
            return null;
        }
        for (int scale = 16; scale <= 4096; scale *= 2)
        {
            int count = 2 * scale + 1;
            var low = new byte[count];
            var split = new float[count];
            bool fits = true;
            for (int g = 0; g < count && fits; g++)
            {
                float first = FirstFloat(x => BinOf(x, scale) >= g);
                float last = g + 1 < count ? MathF.BitDecrement(FirstFloat(x => BinOf(x, scale) >= g + 1)) : 1f;
                low[g] = (byte)thresholds.Count(t => t <= first);
                var inside = thresholds.Where(t => t > first && t <= last).ToArray();
                fits = inside.Length <= 1;
                split[g] = inside.Length == 1 ? inside[0] : float.PositiveInfinity;
            }
            if (fits)
            {
                return new Bins(scale, low, split);
            }
        }
        return null;
    }

    // The first float in [-1, 1] satisfying a predicate that is monotone in x (false, then true).
    private static float FirstFloat(Func<float, bool> predicate)
    {
        long low = OrderedBits(-1f), high = OrderedBits(1f);
        while (low < high)
        {
            long middle = low + (high - low) / 2;
            if (predicate(FromOrderedBits(middle)))
            {
                high = middle;
            }
            else
            {
                low = middle + 1;
            }
        }
        return FromOrderedBits(low);
    }

    // argmin's decision between two neighbours, in float32: the upper one wins when strictly closer, or on a tie when
    // it has the smaller original index.
    private static bool UpperWins(float x, float lower, float upper, bool upperWinsTie)
    {
        float toLower = Math.Abs(x - lower), toUpper = Math.Abs(x - upper);
        return toUpper < toLower || (toUpper == toLower && upperWinsTie);
    }

    // Bisection over the float32 values in [lower, upper], ordered by their bit patterns mapped to a monotone integer.
    private static float FirstWhereUpperWins(float lower, float upper, bool upperWinsTie)
    {
        long low = OrderedBits(lower), high = OrderedBits(upper);
        while (low < high)
        {
            long middle = low + (high - low) / 2;
            if (UpperWins(FromOrderedBits(middle), lower, upper, upperWinsTie))
            {
                high = middle;
            }
            else
            {
                low = middle + 1;
            }
        }
        return FromOrderedBits(low);
    }

    private static long OrderedBits(float value)
    {
        int bits = BitConverter.SingleToInt32Bits(value);
        return bits >= 0 ? bits : -(long)(bits & int.MaxValue);
    }

    private static float FromOrderedBits(long ordered) =>
        ordered >= 0 ? BitConverter.Int32BitsToSingle((int)ordered) : BitConverter.Int32BitsToSingle((int)(-ordered) | int.MinValue);

    private DeviceTables Tables(Device device) => perDevice.GetOrAdd(device.ToString(), _ => new DeviceTables(
        Codebooks.Detached(tensor(thresholds, ScalarType.Float32, device)),
        Codebooks.Detached(tensor(originalIndex, ScalarType.Byte, device)),
        bins is null ? null : Codebooks.Detached(tensor(bins.LowIndex, ScalarType.Byte, device)),
        bins is null ? null : Codebooks.Detached(tensor(bins.Split, ScalarType.Float32, device))));
}
