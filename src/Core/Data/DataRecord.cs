namespace LoraPS.Data;

/// <summary>
/// Where a record came from, for error messages: the file (or "pipeline input"), the 1-based record number and,
/// for files, the 1-based line the record starts on.
/// </summary>
public readonly record struct RecordLocation(string Source, int Record, int? Line)
{
    public override string ToString() =>
        Line is int line ? $"{Source}, record {Record} (line {line})" : $"{Source}, record {Record}";
}

/// <summary>
/// One raw record of a dataset: property names and values exactly as read (strings from CSV/TSV; strings, longs,
/// doubles, booleans and nulls from JSON; whatever the caller passed for in-memory records).
/// </summary>
public sealed class DataRecord
{
    public DataRecord(RecordLocation location, IReadOnlyDictionary<string, object?> fields)
    {
        Location = location;
        Fields = fields ?? throw new ArgumentNullException(nameof(fields));
    }

    public RecordLocation Location { get; }

    public IReadOnlyDictionary<string, object?> Fields { get; }

    /// <summary>
    /// Finds a property by exact name, else by a unique case-insensitive match — PowerShell users type
    /// <c>-ResponseProperty Output</c> for a JSON key "output", and PSObject properties are case-insensitive anyway.
    /// </summary>
    public bool TryGet(string name, out string matchedName, out object? value)
    {
        if (Fields.TryGetValue(name, out value))
        {
            matchedName = name;
            return true;
        }
        string? found = null;
        foreach (string key in Fields.Keys)
        {
            if (string.Equals(key, name, StringComparison.OrdinalIgnoreCase))
            {
                if (found is not null)
                {
                    throw new DatasetFormatException(Location,
                        $"property '{name}' is ambiguous: the record has both '{found}' and '{key}'. Name the property with its exact case.");
                }
                found = key;
            }
        }
        matchedName = found ?? name;
        value = found is null ? null : Fields[found];
        return found is not null;
    }

    /// <summary>The property names, comma-separated, for error messages.</summary>
    public string DescribeProperties() => Fields.Count == 0 ? "(none)" : string.Join(", ", Fields.Keys);
}
