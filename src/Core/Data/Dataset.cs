namespace LoraPS.Data;

/// <summary>How to read a dataset: its format, which properties to use, and for CSV/TSV how quotes work.</summary>
public sealed record DatasetReadOptions
{
    public DatasetFormat Format { get; init; } = DatasetFormat.Auto;

    public PropertyMapping Properties { get; init; } = new();

    /// <summary>The file format; null takes it from the extension.</summary>
    public RecordFileFormat? FileFormat { get; init; }

    public QuoteMode Quoting { get; init; } = QuoteMode.Auto;

    /// <summary>
    /// The labels to use for classification data, or null to infer them. A validation set must use its training
    /// set's map so that class ids agree; a label the map lacks is then an error.
    /// </summary>
    public LabelMap? Labels { get; init; }
}

/// <summary>
/// A dataset read into memory: its examples in record order, the format and property names that were used, and
/// for classification the label map. What <c>Import-LoraDataset</c> returns.
/// </summary>
public sealed class Dataset
{
    public Dataset(string source, DatasetFormat format, PropertyMapping mapping, IReadOnlyList<DatasetExample> examples, LabelMap? labels = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(mapping);
        ArgumentNullException.ThrowIfNull(examples);
        if (format == DatasetFormat.Auto)
        {
            throw new ArgumentException("A dataset has a definite format, not Auto.", nameof(format));
        }
        if ((format == DatasetFormat.Classification) != (labels is not null))
        {
            throw new ArgumentException("Classification data needs a label map, and only classification data has one.", nameof(labels));
        }
        Source = source;
        Format = format;
        Mapping = mapping;
        Examples = examples;
        Labels = labels;
    }

    /// <summary>The file path, or the name of the in-memory source.</summary>
    public string Source { get; }

    /// <summary>Instruction, Text or Classification.</summary>
    public DatasetFormat Format { get; }

    /// <summary>The property names the examples were read from.</summary>
    public PropertyMapping Mapping { get; }

    public IReadOnlyList<DatasetExample> Examples { get; }

    /// <summary>The class names of classification data; null otherwise.</summary>
    public LabelMap? Labels { get; }

    public int Count => Examples.Count;

    /// <summary>The same dataset with other examples (a split or a mix); source, format, mapping and labels are kept.</summary>
    public Dataset WithExamples(IReadOnlyList<DatasetExample> examples, string? source = null) =>
        new(source ?? Source, Format, Mapping, examples, Labels);

    public override string ToString() => $"{Count} {Format.ToString().ToLowerInvariant()} examples from {Source} ({Mapping})";
}
