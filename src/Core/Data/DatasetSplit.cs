namespace LoraPS.Data;

/// <summary>A train/validation split.</summary>
public sealed record TrainValidationSplit<T>(IReadOnlyList<T> Train, IReadOnlyList<T> Validation);

/// <summary>
/// The result of mixing a second dataset into a first: the shuffled mix and how many examples came from each.
/// <see cref="SecondaryDistinct"/> is below <see cref="SecondaryCount"/> when the second dataset had to be repeated.
/// </summary>
public sealed record MixedDataset<T>(IReadOnlyList<T> Items, int PrimaryCount, int SecondaryCount, int SecondaryDistinct)
{
    /// <summary>The share of the mix that came from the second dataset.</summary>
    public double SecondaryFraction => Items.Count == 0 ? 0 : (double)SecondaryCount / Items.Count;
}

/// <summary>
/// Seeded shuffles, train/validation splits and dataset mixing. All randomness comes from
/// <see cref="DeterministicRandom"/>, so the same seed gives the same result on every machine.
/// </summary>
public static class DatasetSplit
{
    /// <summary>A shuffled copy.</summary>
    public static IReadOnlyList<T> Shuffle<T>(IReadOnlyList<T> items, long seed)
    {
        ArgumentNullException.ThrowIfNull(items);
        var copy = items.ToList();
        new DeterministicRandom(seed, RandomStreams.Shuffle).Shuffle(copy);
        return copy;
    }

    /// <summary>
    /// Splits off <c>floor(count × fraction)</c> random examples for validation (at least one when the fraction is
    /// above 0), like LitGPT's <c>random_split</c>: a permutation of the indices, its head for training and its
    /// tail for validation. Both parts keep the permuted order.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The fraction is not in [0, 1).</exception>
    /// <exception cref="ArgumentException">The split would leave no training example.</exception>
    public static TrainValidationSplit<T> ByFraction<T>(IReadOnlyList<T> items, double validationFraction, long seed)
    {
        ArgumentNullException.ThrowIfNull(items);
        if (!(validationFraction >= 0 && validationFraction < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction, "The validation fraction must be at least 0 and below 1.");
        }
        int validationCount = (int)Math.Floor(items.Count * validationFraction);
        if (validationFraction > 0 && validationCount == 0)
        {
            validationCount = 1;   // LitGPT would give an empty validation set and fail later; one example is more useful
        }
        int trainCount = items.Count - validationCount;
        if (trainCount < 1)
        {
            throw new ArgumentException(
                $"A validation fraction of {validationFraction} of {items.Count} example(s) leaves nothing to train on; use more data or a validation file.",
                nameof(items));
        }
        int[] order = new DeterministicRandom(seed, RandomStreams.Split).Permutation(items.Count);
        return new TrainValidationSplit<T>(
            order.Take(trainCount).Select(i => items[i]).ToList(),
            order.Skip(trainCount).Select(i => items[i]).ToList());
    }

    /// <summary>
    /// Mixes a second dataset into the first so that <paramref name="secondaryFraction"/> of the result comes from
    /// it — e.g. general instruction data replayed while learning a narrow task, the usual remedy for catastrophic
    /// forgetting. Every primary example is kept; <c>round(primary × f / (1 − f))</c> secondary examples are drawn
    /// without replacement from a seeded permutation (and from further permutations if more are needed than
    /// exist), then the whole mix is shuffled.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The fraction is not in (0, 1).</exception>
    public static MixedDataset<T> Mix<T>(IReadOnlyList<T> primary, IReadOnlyList<T> secondary, double secondaryFraction, long seed)
    {
        ArgumentNullException.ThrowIfNull(primary);
        ArgumentNullException.ThrowIfNull(secondary);
        if (!(secondaryFraction > 0 && secondaryFraction < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(secondaryFraction), secondaryFraction, "The mix fraction must be above 0 and below 1.");
        }
        if (secondary.Count == 0)
        {
            throw new ArgumentException("The dataset to mix in has no examples.", nameof(secondary));
        }
        long wanted = (long)Math.Round(primary.Count * secondaryFraction / (1 - secondaryFraction), MidpointRounding.AwayFromZero);
        if (wanted > int.MaxValue - primary.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(secondaryFraction), secondaryFraction, "The mix fraction asks for too many examples.");
        }
        var random = new DeterministicRandom(seed, RandomStreams.Mix);
        var mixed = new List<T>(primary.Count + (int)wanted);
        mixed.AddRange(primary);
        int[] pass = [];
        for (int drawn = 0; drawn < wanted; drawn++)
        {
            if (drawn % secondary.Count == 0)
            {
                pass = random.Permutation(secondary.Count);
            }
            mixed.Add(secondary[pass[drawn % secondary.Count]]);
        }
        random.Shuffle(mixed);
        return new MixedDataset<T>(mixed, primary.Count, (int)wanted, (int)Math.Min(wanted, secondary.Count));
    }
}
