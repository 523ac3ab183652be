namespace LoraPS.Data;

/// <summary>
/// A pseudo-random generator whose output is fixed by its seed on every platform and .NET version — unlike
/// <see cref="System.Random"/>, whose algorithm is an implementation detail — so a seed reproduces a shuffle, a
/// split and a batch order anywhere, and a resumed run sees the same batches.
/// <para>Algorithm: xoshiro256** 1.0 (Blackman &amp; Vigna, https://prng.di.unimi.it/), its four state words the first
/// four outputs of SplitMix64 started at the derived seed. The derived seed mixes the user's seed with a list of
/// stream numbers (purpose, epoch, …): <c>x = seed; for each s: x = mix64(x ^ mix64(s + φ))</c>, where mix64 is
/// SplitMix64's finalizer and φ = 0x9E3779B97F4A7C15, so every (seed, streams) gets an independent sequence.</para>
/// <para>Integers below n use Lemire's multiply-shift with rejection (unbiased); shuffles are Fisher–Yates from the
/// last position down: for i = n−1 … 1, swap i with <c>NextInt(i + 1)</c>.</para>
/// </summary>
public sealed class DeterministicRandom
{
    private const ulong Phi = 0x9E3779B97F4A7C15UL;

    private ulong _s0;
    private ulong _s1;
    private ulong _s2;
    private ulong _s3;

    public DeterministicRandom(long seed, params ulong[] streams)
    {
        ArgumentNullException.ThrowIfNull(streams);
        ulong x = unchecked((ulong)seed);
        foreach (ulong stream in streams)
        {
            x = Mix64(x ^ Mix64(unchecked(stream + Phi)));
        }
        _s0 = SplitMix64(ref x);
        _s1 = SplitMix64(ref x);
        _s2 = SplitMix64(ref x);
        _s3 = SplitMix64(ref x);
    }

    private DeterministicRandom(ulong s0, ulong s1, ulong s2, ulong s3) => (_s0, _s1, _s2, _s3) = (s0, s1, s2, s3);

    /// <summary>A generator with the given raw xoshiro256** state (for checking against published vectors).</summary>
    internal static DeterministicRandom FromState(ulong s0, ulong s1, ulong s2, ulong s3) => new(s0, s1, s2, s3);

    /// <summary>The next 64 random bits (xoshiro256**).</summary>
    public ulong NextUInt64()
    {
        ulong result = unchecked(RotateLeft(_s1 * 5, 7) * 9);
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>A uniform integer in [0, <paramref name="exclusiveMax"/>).</summary>
    public int NextInt(int exclusiveMax)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(exclusiveMax, 1);
        ulong n = (ulong)exclusiveMax;
        ulong high = Math.BigMul(NextUInt64(), n, out ulong low);
        if (low < n)
        {
            // Reject the few products that would make small results more likely (Lemire 2019).
            ulong threshold = unchecked(0UL - n) % n;
            while (low < threshold)
            {
                high = Math.BigMul(NextUInt64(), n, out low);
            }
        }
        return (int)high;
    }

    /// <summary>A uniform double in [0, 1) from the top 53 bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Shuffles in place (Fisher–Yates, from the end).</summary>
    public void Shuffle<T>(IList<T> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>A random permutation of 0 … count − 1.</summary>
    public int[] Permutation(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        int[] order = Enumerable.Range(0, count).ToArray();
        Shuffle(order);
        return order;
    }

    internal static ulong SplitMix64(ref ulong state)
    {
        state = unchecked(state + Phi);
        return Mix64(state);
    }

    private static ulong Mix64(ulong z)
    {
        unchecked
        {
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }

    private static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));
}

/// <summary>Stream numbers for <see cref="DeterministicRandom"/>, one per purpose, so purposes never share a sequence.</summary>
public static class RandomStreams
{
    /// <summary>The train/validation split.</summary>
    public const ulong Split = 1;

    /// <summary>Choosing and placing the examples of a mixed-in dataset.</summary>
    public const ulong Mix = 2;

    /// <summary>The order of examples in an epoch (followed by the epoch number).</summary>
    public const ulong EpochOrder = 3;

    /// <summary>The order of length-grouped batches in an epoch (followed by the epoch number).</summary>
    public const ulong BatchOrder = 4;

    /// <summary>A plain shuffle.</summary>
    public const ulong Shuffle = 5;
}
