namespace LoraPS.Data;

/// <summary>How examples are put into micro-batches.</summary>
public enum BatchOrdering
{
    /// <summary>Shuffle, then cut into consecutive batches (LitGPT's shuffled DataLoader). Padding is whatever it is.</summary>
    Random,

    /// <summary>
    /// Shuffle, sort by length inside buckets of <see cref="BatchSampler.BucketBatches"/> batches, cut, and shuffle the
    /// batch order: examples of similar length share a batch, so little compute is spent on padding, while the
    /// data order stays random at the scale of buckets (the "megabatch" trick of transformers' LengthGroupedSampler).
    /// </summary>
    LengthGrouped,
}

/// <summary>Tokens in a set of padded batches.</summary>
public readonly record struct PaddingStats(long RealTokens, long PaddedTokens)
{
    /// <summary>Positions in the [B, T] tensors: real tokens plus padding.</summary>
    public long TotalPositions => RealTokens + PaddedTokens;

    /// <summary>The share of positions that are padding, i.e. compute spent on nothing.</summary>
    public double PaddingFraction => TotalPositions == 0 ? 0 : (double)PaddedTokens / TotalPositions;

    public override string ToString() => $"{RealTokens} tokens, {PaddedTokens} padding ({PaddingFraction:P1})";
}

/// <summary>
/// Decides which examples form each micro-batch of each epoch. Everything follows from (seed, epoch): epoch e's
/// plan is rebuilt from scratch from the seed, so a run resumed at any micro-batch index sees the same batches
/// as an uninterrupted run, on any machine. Every epoch has <see cref="BatchesPerEpoch"/> = ceil(n / B) batches;
/// when B does not divide n exactly one of them is smaller than B (nothing is dropped). The returned index arrays
/// are shared with the sampler's cache: read them, do not modify them.
/// </summary>
public sealed class BatchSampler
{
    private readonly int[] _lengths;
    private int _cachedEpoch = -1;
    private IReadOnlyList<int[]> _cachedPlan = [];

    /// <param name="lengths">The token count of every example (<see cref="TokenizedDataset.Lengths"/>).</param>
    /// <param name="microBatchSize">Examples per micro-batch.</param>
    /// <param name="seed">The seed of every shuffle.</param>
    /// <param name="ordering">Random or length-grouped batches.</param>
    /// <param name="bucketBatches">For length grouping: how many batches' worth of examples are sorted together (50).</param>
    /// <param name="longestBatchFirst">
    /// For length grouping: move the batch holding the longest example to the front of every epoch, so running out
    /// of memory happens on the first step rather than hours in (as transformers does).
    /// </param>
    public BatchSampler(IReadOnlyList<int> lengths, int microBatchSize, long seed, BatchOrdering ordering = BatchOrdering.LengthGrouped,
        int bucketBatches = 50, bool longestBatchFirst = true)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentOutOfRangeException.ThrowIfLessThan(microBatchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketBatches, 1);
        if (lengths.Count == 0)
        {
            throw new ArgumentException("There are no examples to batch.", nameof(lengths));
        }
        _lengths = lengths.ToArray();
        MicroBatchSize = microBatchSize;
        Seed = seed;
        Ordering = ordering;
        BucketBatches = bucketBatches;
        LongestBatchFirst = longestBatchFirst;
        BatchesPerEpoch = (_lengths.Length + microBatchSize - 1) / microBatchSize;
    }

    public int MicroBatchSize { get; }

    public long Seed { get; }

    public BatchOrdering Ordering { get; }

    public int BucketBatches { get; }

    public bool LongestBatchFirst { get; }

    public int ExampleCount => _lengths.Length;

    public int BatchesPerEpoch { get; }

    /// <summary>The example indices of every micro-batch of an epoch, in training order.</summary>
    public IReadOnlyList<int[]> Epoch(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        if (epoch != _cachedEpoch)
        {
            _cachedPlan = Plan(epoch);
            _cachedEpoch = epoch;
        }
        return _cachedPlan;
    }

    /// <summary>The example indices of micro-batch <paramref name="index"/> of an epoch.</summary>
    public int[] Batch(int epoch, int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, BatchesPerEpoch);
        return Epoch(epoch)[index];
    }

    /// <summary>The epoch and index within it of the n-th micro-batch of the whole run (0-based).</summary>
    public (int Epoch, int Index) Locate(long microBatch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(microBatch);
        return ((int)(microBatch / BatchesPerEpoch), (int)(microBatch % BatchesPerEpoch));
    }

    /// <summary>Real and padding tokens if every batch of the epoch is padded to its longest example.</summary>
    public PaddingStats MeasurePadding(int epoch) => MeasurePadding(Epoch(epoch), _lengths);

    /// <summary>Real and padding tokens of the given batches of examples with the given lengths.</summary>
    public static PaddingStats MeasurePadding(IEnumerable<int[]> batches, IReadOnlyList<int> lengths)
    {
        ArgumentNullException.ThrowIfNull(batches);
        ArgumentNullException.ThrowIfNull(lengths);
        long real = 0;
        long padded = 0;
        foreach (int[] batch in batches)
        {
            int longest = batch.Max(i => lengths[i]);
            foreach (int i in batch)
            {
                real += lengths[i];
                padded += longest - lengths[i];
            }
        }
        return new PaddingStats(real, padded);
    }

    /// <summary>
    /// Batches for evaluation: sorted by length (longest first, ties by index) and cut into batches of
    /// <paramref name="batchSize"/> — no randomness is needed, and sorting keeps padding lowest.
    /// </summary>
    public static IReadOnlyList<int[]> ForEvaluation(IReadOnlyList<int> lengths, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        int[] order = Enumerable.Range(0, lengths.Count).OrderByDescending(i => lengths[i]).ThenBy(i => i).ToArray();
        return order.Chunk(batchSize).ToList();
    }

    private List<int[]> Plan(int epoch)
    {
        int[] order = new DeterministicRandom(Seed, RandomStreams.EpochOrder, (ulong)epoch).Permutation(_lengths.Length);
        if (Ordering == BatchOrdering.Random)
        {
            return order.Chunk(MicroBatchSize).ToList();
        }

        var batches = new List<int[]>(BatchesPerEpoch);
        foreach (int[] bucket in order.Chunk(MicroBatchSize * BucketBatches))
        {
            // Longest first within the bucket; ties keep the shuffled order (a stable sort), so nothing depends on
            // the sort algorithm. A bucket is a whole number of batches, so only the last batch can be short.
            int[] sorted = bucket.OrderByDescending(i => _lengths[i]).ToArray();
            batches.AddRange(sorted.Chunk(MicroBatchSize));
        }
        new DeterministicRandom(Seed, RandomStreams.BatchOrder, (ulong)epoch).Shuffle(batches);
        if (LongestBatchFirst)
        {
            int longest = 0;
            for (int b = 1; b < batches.Count; b++)
            {
                if (_lengths[batches[b][0]] > _lengths[batches[longest][0]])
                {
                    longest = b;
                }
            }
            (batches[0], batches[longest]) = (batches[longest], batches[0]);
        }
        return batches;
    }
}
