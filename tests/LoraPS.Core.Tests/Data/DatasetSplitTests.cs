using LoraPS.Data;
using Xunit;

namespace LoraPS.Tests.Data;

/// <summary>Seeded shuffles, validation splits and mixing: deterministic, seed-sensitive, and with exact counts.</summary>
public class DatasetSplitTests
{
    private static readonly List<int> Hundred = Enumerable.Range(0, 100).ToList();

    [Fact]
    public void Shuffle_SameSeedSameOrder_DifferentSeedDifferentOrder()
    {
        Assert.Equal(DatasetSplit.Shuffle(Hundred, 1337), DatasetSplit.Shuffle(Hundred, 1337));
        Assert.NotEqual(DatasetSplit.Shuffle(Hundred, 1337), DatasetSplit.Shuffle(Hundred, 1338));
        Assert.NotEqual(Hundred, DatasetSplit.Shuffle(Hundred, 1337));
        Assert.Equal(Hundred, DatasetSplit.Shuffle(Hundred, 1337).Order());
    }

    [Fact]
    public void ByFraction_FloorsTheCount_IsDisjointAndComplete_AndPinned()
    {
        TrainValidationSplit<int> split = DatasetSplit.ByFraction(Hundred, 0.05, 42);
        Assert.Equal((95, 5), (split.Train.Count, split.Validation.Count));
        Assert.Empty(split.Train.Intersect(split.Validation));
        Assert.Equal(Hundred, split.Train.Concat(split.Validation).Order());
        Assert.Equal(split.Validation, DatasetSplit.ByFraction(Hundred, 0.05, 42).Validation);
        Assert.NotEqual(split.Validation, DatasetSplit.ByFraction(Hundred, 0.05, 43).Validation);

        // Pinned: the permutation of 10 with (seed 42, split stream) is [1, 2, 9, 6, 8, 4, 5, 3, 0, 7].
        TrainValidationSplit<int> ten = DatasetSplit.ByFraction(Enumerable.Range(0, 10).ToList(), 0.3, 42);
        Assert.Equal([1, 2, 9, 6, 8, 4, 5], ten.Train);
        Assert.Equal([3, 0, 7], ten.Validation);

        // LitGPT's 0.03865 of 51,760 gives exactly 2,000.
        Assert.Equal(2000, DatasetSplit.ByFraction(Enumerable.Range(0, 51_760).ToList(), 0.03865, 42).Validation.Count);
    }

    [Fact]
    public void ByFraction_EdgeCases()
    {
        Assert.Empty(DatasetSplit.ByFraction(Hundred, 0, 1).Validation);
        Assert.Single(DatasetSplit.ByFraction(Enumerable.Range(0, 10).ToList(), 0.01, 1).Validation);   // at least one
        Assert.Throws<ArgumentOutOfRangeException>(() => DatasetSplit.ByFraction(Hundred, 1.0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => DatasetSplit.ByFraction(Hundred, -0.1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => DatasetSplit.ByFraction(Hundred, double.NaN, 1));
        Assert.Contains("leaves nothing to train on", Assert.Throws<ArgumentException>(() => DatasetSplit.ByFraction([1], 0.5, 1)).Message);
    }

    [Theory]
    [InlineData(1000, 100, 0.2, 250)]
    [InlineData(1000, 5000, 0.5, 1000)]
    [InlineData(300, 50, 0.1, 33)]
    [InlineData(7, 3, 0.25, 2)]      // 7 × 0.25 / 0.75 = 2.33 → 2
    public void Mix_DrawsTheRatioFromTheSecondDataset(int primary, int secondary, double fraction, int expectedSecondary)
    {
        List<string> a = Enumerable.Range(0, primary).Select(i => $"a{i}").ToList();
        List<string> b = Enumerable.Range(0, secondary).Select(i => $"b{i}").ToList();
        MixedDataset<string> mix = DatasetSplit.Mix(a, b, fraction, 7);

        Assert.Equal(primary, mix.PrimaryCount);
        Assert.Equal(expectedSecondary, mix.SecondaryCount);
        Assert.Equal(primary + expectedSecondary, mix.Items.Count);
        Assert.Equal(a.Order(), mix.Items.Where(s => s[0] == 'a').Order());   // every primary example exactly once
        Assert.Equal(expectedSecondary, mix.Items.Count(s => s[0] == 'b'));
        Assert.Equal(Math.Min(expectedSecondary, secondary), mix.SecondaryDistinct);
        Assert.Equal(mix.SecondaryDistinct, mix.Items.Where(s => s[0] == 'b').Distinct().Count());
        Assert.Equal(fraction, mix.SecondaryFraction, 0.05);
        Assert.Equal(mix.Items, DatasetSplit.Mix(a, b, fraction, 7).Items);
        Assert.NotEqual(mix.Items, DatasetSplit.Mix(a, b, fraction, 8).Items);
    }

    [Fact]
    public void Mix_RepeatsASmallSecondDatasetEvenly_AndSpreadsItThroughTheMix()
    {
        List<int> a = Enumerable.Range(0, 100).ToList();
        List<int> b = Enumerable.Range(1000, 10).ToList();
        MixedDataset<int> mix = DatasetSplit.Mix(a, b, 0.5, 3);
        Assert.Equal(100, mix.SecondaryCount);
        Assert.Equal(10, mix.SecondaryDistinct);
        Assert.All(mix.Items.Where(i => i >= 1000).GroupBy(i => i), g => Assert.Equal(10, g.Count()));   // whole passes
        // Shuffled together: the second half of the mix holds a fair share of the mixed-in examples.
        Assert.InRange(mix.Items.Skip(100).Count(i => i >= 1000), 35, 65);
    }

    [Fact]
    public void Mix_RejectsBadArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => DatasetSplit.Mix(Hundred, Hundred, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => DatasetSplit.Mix(Hundred, Hundred, 1, 1));
        Assert.Throws<ArgumentException>(() => DatasetSplit.Mix(Hundred, new List<int>(), 0.2, 1));
    }
}
