using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>
/// Finds, for float32 values already scaled into [-1, 1], the index of the nearest entry of a codebook with exactly the
/// semantics of bitsandbytes' reference backend: <c>argmin_j |x − code[j]|</c> in float32, the first index winning ties.
/// </summary>
/// <remarks>
/// A brute-force argmin needs a [n, table] temporary (16× or 256× the input). Instead: sort the distinct table values,
/// <c>bucketize</c> each x between its two sorted neighbours, and compare the float32 distances to just those two. The
/// true argmin is always one of them: |x − c| rounded to float32 is monotone in c, and equal rounded distances to a
/// farther entry would need two table values closer together than a float32 rounding step, which no bnb table has.
/// A tie between the two neighbours goes to the smaller original index (for FP4, whose table is not sorted, that is
/// not always the smaller value). Equal values in the table (FP4's two zeros) collapse to their smallest index.
/// </remarks>
internal sealed class NearestCode
{
    private readonly float[] sorted;
    private readonly byte[] originalIndex;
    private readonly bool[] upperWinsTie;
    private readonly ConcurrentDictionary<string, DeviceTables> perDevice = new();

    private sealed record DeviceTables(Tensor Sorted, Tensor OriginalIndex, Tensor UpperWinsTie);

    public NearestCode(string name, IReadOnlyList<float> table)
    {
        if (table.Count is < 2 or > 256)
        {
            throw new ArgumentException($"A codebook needs 2 to 256 entries; '{name}' has {table.Count}.", nameof(table));
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
        sorted = distinct.Select(e => e.Value).ToArray();
        originalIndex = distinct.Select(e => (byte)e.Index).ToArray();
        upperWinsTie = Enumerable.Range(0, distinct.Length - 1).Select(k => distinct[k + 1].Index < distinct[k].Index).ToArray();
    }

    public string Name { get; }

    public IReadOnlyList<float> Table { get; }

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

    /// <summary>uint8 codes, same shape as <paramref name="scaled"/> (float32, finite, in [-1, 1]).</summary>
    public Tensor Encode(Tensor scaled)
    {
        using var scope = NewDisposeScope();
        var t = Tables(scaled.device);
        long last = sorted.Length - 1;
        // right: true counts the sorted values <= x, so x itself sits at lo when it is exactly a table value.
        var lower = bucketize(scaled, t.Sorted, outInt32: true, right: true).sub_(1).clamp_(0, last - 1);
        var upper = lower + 1;
        var flatLower = lower.view(-1);
        var flatUpper = upper.view(-1);
        var distanceLower = (scaled - t.Sorted.index_select(0, flatLower).view_as(scaled)).abs_();
        var distanceUpper = (scaled - t.Sorted.index_select(0, flatUpper).view_as(scaled)).abs_();
        var takeUpper = distanceUpper.lt(distanceLower)
            .logical_or_(distanceUpper.eq(distanceLower).logical_and_(t.UpperWinsTie.index_select(0, flatLower).view_as(scaled)));
        var chosen = where(takeUpper, upper, lower);
        return t.OriginalIndex.index_select(0, chosen.view(-1)).view_as(scaled).MoveToOuterDisposeScope();
    }

    private DeviceTables Tables(Device device) => perDevice.GetOrAdd(device.ToString(), _ => new DeviceTables(
        Codebooks.Detached(tensor(sorted, ScalarType.Float32, device)),
        Codebooks.Detached(tensor(originalIndex, ScalarType.Byte, device)),
        Codebooks.Detached(tensor(upperWinsTie, ScalarType.Bool, device))));
}
