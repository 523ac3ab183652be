using LoraPS.Data;
using LoraPS.Tests.Tokenization;
using LoraPS.Tokenization;
using Xunit;

namespace LoraPS.Tests.Data;

/// <summary>Batches cover every example once per epoch, follow only from (seed, epoch, index), and group by length.</summary>
public class BatchSamplerTests
{
    private static int[] RandomLengths(int count, long seed)
    {
        var random = new DeterministicRandom(seed);
        return Enumerable.Range(0, count).Select(_ => 1 + random.NextInt(500)).ToArray();
    }

    [Theory]
    [InlineData(BatchOrdering.Random)]
    [InlineData(BatchOrdering.LengthGrouped)]
    public void EveryEpoch_UsesEveryExampleOnce_InCeilNOverBBatches(BatchOrdering ordering)
    {
        int[] lengths = RandomLengths(1003, 1);
        var sampler = new BatchSampler(lengths, 8, 1337, ordering, bucketBatches: 10);
        Assert.Equal(126, sampler.BatchesPerEpoch);
        for (int epoch = 0; epoch < 3; epoch++)
        {
            IReadOnlyList<int[]> batches = sampler.Epoch(epoch);
            Assert.Equal(126, batches.Count);
            Assert.Equal(Enumerable.Range(0, 1003), batches.SelectMany(b => b).Order());
            Assert.Single(batches, b => b.Length != 8);
            Assert.Equal(3, batches.Single(b => b.Length != 8).Length);
        }
    }

    [Fact]
    public void Batches_FollowFromSeedEpochAndIndex_SoAResumedRunSeesTheSameOnes()
    {
        int[] lengths = RandomLengths(500, 2);
        var original = new BatchSampler(lengths, 4, 1337);
        var epochs = Enumerable.Range(0, 3).Select(e => original.Epoch(e).Select(b => b.ToArray()).ToList()).ToList();

        // A fresh sampler (a resumed process) asked directly for epoch 2, batch 57, then epoch 0 again.
        var resumed = new BatchSampler(lengths, 4, 1337);
        Assert.Equal(epochs[2][57], resumed.Batch(2, 57));
        Assert.Equal(epochs[0][3], resumed.Batch(0, 3));
        Assert.Equal(epochs[1], resumed.Epoch(1));

        // Global micro-batch 300 of a 125-batch epoch is epoch 2, index 50.
        Assert.Equal((2, 50), resumed.Locate(300));
        Assert.Equal(epochs[2][50], resumed.Batch(resumed.Locate(300).Epoch, resumed.Locate(300).Index));

        // Epochs re-shuffle; another seed gives other batches.
        Assert.NotEqual(epochs[0], epochs[1]);
        Assert.NotEqual(epochs[0], new BatchSampler(lengths, 4, 1338).Epoch(0));
    }

    [Fact]
    public void LengthGrouped_PutsTheLongestBatchFirst_AndSortsWithinBatches()
    {
        int[] lengths = RandomLengths(400, 3);
        int longest = Array.IndexOf(lengths, lengths.Max());
        var sampler = new BatchSampler(lengths, 8, 9);
        for (int epoch = 0; epoch < 3; epoch++)
        {
            Assert.Equal(lengths.Max(), lengths[sampler.Epoch(epoch)[0][0]]);
            Assert.All(sampler.Epoch(epoch), b => Assert.Equal(b.Select(i => lengths[i]).OrderDescending(), b.Select(i => lengths[i])));
        }
        // Without it the same batches come in the shuffled order, which only the one swap differs from.
        IReadOnlyList<int[]> plain = new BatchSampler(lengths, 8, 9, longestBatchFirst: false).Epoch(0);
        IReadOnlyList<int[]> first = sampler.Epoch(0);
        Assert.Equal(plain.Select(b => string.Join(",", b)).Order(), first.Select(b => string.Join(",", b)).Order());
        Assert.True(plain.Zip(first).Count(p => !p.First.SequenceEqual(p.Second)) <= 2);
        Assert.Contains(longest, first[0]);
    }

    [Fact]
    public void LengthGrouping_CutsPaddingOnTheAlpacaSubset()
    {
        // Real lengths: the first 500 bundled Alpaca examples tokenized with stories260K (mean 330 tokens, up to 1,800).
        Dataset alpaca = DatasetReader.ReadFile(DataFixtures.AlpacaSubset);
        int[] lengths = new ExampleTokenizer(TextTokenizer.Load(TokenizerFixtures.Stories260K)).TokenizeAll(alpaca.Examples.Take(500)).Lengths;

        PaddingStats random = new BatchSampler(lengths, 8, 1337, BatchOrdering.Random).MeasurePadding(0);
        PaddingStats grouped = new BatchSampler(lengths, 8, 1337, BatchOrdering.LengthGrouped).MeasurePadding(0);

        Assert.Equal(random.RealTokens, grouped.RealTokens);
        // Measured with micro-batch 8: 47.1 % padding → 4.9 % here; on all 5,000 examples 44.9 % → 3.8 %, i.e. the
        // grouped batches need 0.57× the positions (compute) of random ones.
        Assert.InRange(random.PaddingFraction, 0.35, 0.60);
        Assert.InRange(grouped.PaddingFraction, 0.0, 0.08);
        Assert.True(grouped.TotalPositions < 0.65 * random.TotalPositions,
            $"grouped {grouped} should need far fewer positions than random {random}");
        // Sorting everything globally is the lower bound; buckets of 50 batches come close to it.
        PaddingStats sorted = BatchSampler.MeasurePadding(BatchSampler.ForEvaluation(lengths, 8), lengths);
        Assert.True(sorted.PaddedTokens <= grouped.PaddedTokens);
    }

    [Fact]
    public void ForEvaluation_SortsLongestFirst_WithoutRandomness()
    {
        IReadOnlyList<int[]> batches = BatchSampler.ForEvaluation([3, 9, 1, 9, 5], 2);
        Assert.Equal([[1, 3], [4, 0], [2]], batches);
    }

    [Fact]
    public void MeasurePadding_CountsPositions()
    {
        PaddingStats stats = BatchSampler.MeasurePadding([[0, 1], [2]], [3, 5, 4]);
        Assert.Equal(new PaddingStats(12, 2), stats);
        Assert.Equal(2.0 / 14, stats.PaddingFraction, 12);
    }

    [Fact]
    public void InvalidArguments()
    {
        Assert.Throws<ArgumentException>(() => new BatchSampler([], 4, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchSampler([1, 2], 0, 1));
        var sampler = new BatchSampler([1, 2, 3], 2, 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.Batch(0, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.Epoch(-1));
    }
}
