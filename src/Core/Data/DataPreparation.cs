using System.Globalization;
using LoraPS.Tokenization;

namespace LoraPS.Data;

/// <summary>How a dataset becomes training and validation data.</summary>
public sealed record DataPreparationOptions
{
    public TokenizationOptions Tokenization { get; init; } = new();

    /// <summary>
    /// The share of the training data held out for validation when no validation dataset is given; 0 for none.
    /// (LitGPT's Alpaca uses 0.03865, which is 2,000 of 51,760 examples.)
    /// </summary>
    public double ValidationFraction { get; init; }

    /// <summary>The share of the training set drawn from the mixed-in dataset, when one is given (see <see cref="DatasetSplit.Mix{T}"/>).</summary>
    public double MixFraction { get; init; } = 0.2;

    /// <summary>The seed of the split and the mix (LitGPT's data seed is 42).</summary>
    public long Seed { get; init; } = 42;
}

/// <summary>Training data ready for a <see cref="BatchSampler"/>, and what was done to get it.</summary>
public sealed class PreparedData
{
    internal PreparedData(DatasetFormat format, LabelMap? labels, IReadOnlyList<DatasetExample> trainExamples, TokenizedDataset train,
        IReadOnlyList<DatasetExample> validationExamples, TokenizedDataset? validation, int mixedInCount, string fingerprint)
    {
        Format = format;
        Labels = labels;
        TrainExamples = trainExamples;
        Train = train;
        ValidationExamples = validationExamples;
        Validation = validation;
        MixedInCount = mixedInCount;
        Fingerprint = fingerprint;
    }

    public DatasetFormat Format { get; }

    /// <summary>The classification labels; null for language modelling.</summary>
    public LabelMap? Labels { get; }

    /// <summary>The training examples in the order of <see cref="Train"/> (split and mixed).</summary>
    public IReadOnlyList<DatasetExample> TrainExamples { get; }

    public TokenizedDataset Train { get; }

    /// <summary>The validation examples in the order of <see cref="Validation"/>; empty when there is none.</summary>
    public IReadOnlyList<DatasetExample> ValidationExamples { get; }

    public TokenizedDataset? Validation { get; }

    /// <summary>How many training examples came from the mixed-in dataset.</summary>
    public int MixedInCount { get; }

    /// <summary>
    /// SHA-256 over the fingerprints of every source dataset (<see cref="DataFingerprint"/>) and the split and mix
    /// settings: equal fingerprints mean the same training and validation token ids.
    /// </summary>
    public string Fingerprint { get; }
}

/// <summary>
/// The data steps of a fine-tuning run in one call: validation split (by fraction, or a given dataset), mixing in
/// a second dataset, tokenization and the fingerprint.
/// </summary>
public static class DataPreparation
{
    /// <exception cref="ArgumentException">
    /// Both a validation dataset and a fraction were given, or the datasets differ in format or labels.
    /// </exception>
    public static PreparedData Prepare(Dataset train, TextTokenizer tokenizer, DataPreparationOptions? options = null,
        Dataset? validation = null, Dataset? mixIn = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(tokenizer);
        options ??= new DataPreparationOptions();
        if (validation is not null && options.ValidationFraction > 0)
        {
            throw new ArgumentException("Give either a validation dataset or a validation fraction, not both.", nameof(validation));
        }
        CheckCompatible(train, validation, "validation");
        CheckCompatible(train, mixIn, "mixed-in");

        IReadOnlyList<DatasetExample> trainExamples = train.Examples;
        IReadOnlyList<DatasetExample> validationExamples = validation?.Examples ?? [];
        if (options.ValidationFraction > 0)
        {
            TrainValidationSplit<DatasetExample> split = DatasetSplit.ByFraction(train.Examples, options.ValidationFraction, options.Seed);
            (trainExamples, validationExamples) = (split.Train, split.Validation);
        }
        int mixedIn = 0;
        if (mixIn is not null)
        {
            MixedDataset<DatasetExample> mix = DatasetSplit.Mix(trainExamples, mixIn.Examples, options.MixFraction, options.Seed);
            (trainExamples, mixedIn) = (mix.Items, mix.SecondaryCount);
        }

        var exampleTokenizer = new ExampleTokenizer(tokenizer, options.Tokenization);
        TokenizedDataset tokenizedTrain = exampleTokenizer.TokenizeAll(trainExamples, cancellationToken);
        TokenizedDataset? tokenizedValidation = validationExamples.Count > 0 ? exampleTokenizer.TokenizeAll(validationExamples, cancellationToken) : null;

        string fingerprint = DataFingerprint.Combine(
            DataFingerprint.Compute(train, exampleTokenizer),
            validation is null ? null : DataFingerprint.Compute(validation, exampleTokenizer),
            mixIn is null ? null : DataFingerprint.Compute(mixIn, exampleTokenizer),
            string.Create(CultureInfo.InvariantCulture,
                $"validationFraction={options.ValidationFraction:R};mixFraction={(mixIn is null ? 0 : options.MixFraction):R};seed={options.Seed}"));
        return new PreparedData(train.Format, train.Labels, trainExamples, tokenizedTrain, validationExamples, tokenizedValidation, mixedIn, fingerprint);
    }

    private static void CheckCompatible(Dataset train, Dataset? other, string role)
    {
        if (other is null)
        {
            return;
        }
        if (other.Format != train.Format)
        {
            throw new ArgumentException($"The {role} dataset ({other.Source}) is {other.Format} data but the training dataset ({train.Source}) is {train.Format} data.");
        }
        if (train.Labels is not null && !train.Labels.Names.SequenceEqual(other.Labels!.Names))
        {
            throw new ArgumentException(
                $"The {role} dataset ({other.Source}) has labels {other.Labels} but the training dataset has {train.Labels}; read it with the training labels (DatasetReadOptions.Labels).");
        }
    }
}
