namespace LoraPS.Data;

/// <summary>
/// Reads a dataset from a file or from in-memory records: decides the format and property mapping from the first
/// record, turns every record into an example, and for classification builds the label map. Any problem is a
/// <see cref="DatasetFormatException"/> naming the record.
/// </summary>
public static class DatasetReader
{
    /// <summary>Reads a .json, .jsonl, .csv or .tsv file (optionally .gz).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DatasetFormatException">The file is empty, malformed, or a record lacks a needed property.</exception>
    public static Dataset ReadFile(string path, DatasetReadOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new DatasetReadOptions();
        return FromRecords(RecordReader.ReadFile(path, options.FileFormat, options.Quoting), path, options, cancellationToken);
    }

    /// <summary>Reads in-memory records, e.g. PowerShell pipeline objects turned into dictionaries.</summary>
    public static Dataset FromDictionaries(IEnumerable<IReadOnlyDictionary<string, object?>> records, DatasetReadOptions? options = null,
        string source = RecordReader.PipelineSource, CancellationToken cancellationToken = default) =>
        FromRecords(RecordReader.FromDictionaries(records, source), source, options, cancellationToken);

    /// <summary>Builds a dataset from raw records.</summary>
    public static Dataset FromRecords(IEnumerable<DataRecord> records, string source, DatasetReadOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(records);
        ArgumentNullException.ThrowIfNull(source);
        options ??= new DatasetReadOptions();

        DatasetFormat format = DatasetFormat.Auto;
        PropertyMapping mapping = options.Properties;
        var examples = new List<DatasetExample>();
        var rawLabels = new List<(object? Raw, RecordLocation At)>();
        foreach (DataRecord record in records)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (format == DatasetFormat.Auto)
            {
                (format, mapping) = PropertyMapping.Resolve(options.Format, options.Properties, record);
            }
            examples.Add(format switch
            {
                DatasetFormat.Instruction => new InstructionExample(
                    PropertyMapping.RequireText(record, mapping.PromptProperty!, "instruction", "PromptProperty"),
                    mapping.InputProperty is null ? "" : PropertyMapping.OptionalText(record, mapping.InputProperty) ?? "",
                    PropertyMapping.RequireText(record, mapping.ResponseProperty!, "response", "ResponseProperty")),
                DatasetFormat.Text => new TextExample(PropertyMapping.RequireText(record, mapping.TextProperty!, "text", "TextProperty")),
                _ => ReadClassification(record, mapping, rawLabels),
            });
        }
        if (examples.Count == 0)
        {
            throw new DatasetFormatException(source, "there are no records.");
        }
        if (format != DatasetFormat.Classification)
        {
            return new Dataset(source, format, mapping, examples);
        }

        // Labels are mapped once all are seen: string labels get ids by sorted order, not by first appearance.
        LabelMap labels = options.Labels ?? LabelMap.Infer(rawLabels);
        for (int i = 0; i < examples.Count; i++)
        {
            examples[i] = (ClassificationExample)examples[i] with { Label = labels.IdOf(rawLabels[i].Raw, rawLabels[i].At) };
        }
        return new Dataset(source, format, mapping, examples, labels);
    }

    private static ClassificationExample ReadClassification(DataRecord record, PropertyMapping mapping, List<(object?, RecordLocation)> rawLabels)
    {
        string text = PropertyMapping.RequireText(record, mapping.TextProperty!, "text", "TextProperty");
        string? pair = mapping.TextPairProperty is null ? null : PropertyMapping.RequireText(record, mapping.TextPairProperty, "second text", "TextPairProperty");
        if (!record.TryGet(mapping.LabelProperty!, out _, out object? label))
        {
            throw new DatasetFormatException(record.Location,
                $"missing property '{mapping.LabelProperty}' (the label); the record has {record.DescribeProperties()}. " +
                "Every record needs a label, or set LabelProperty to another property.");
        }
        rawLabels.Add((label, record.Location));
        return new ClassificationExample(text, pair, -1);
    }
}
