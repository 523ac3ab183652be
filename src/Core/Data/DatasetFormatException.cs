namespace LoraPS.Data;

/// <summary>
/// A dataset file or record is empty or malformed. The message names the source and, where it applies, the
/// 1-based line and record number, says what is wrong and what to do; the same facts are properties for callers
/// that report them separately.
/// </summary>
public sealed class DatasetFormatException : FormatException
{
    public DatasetFormatException(string source, string problem, int? line = null, int? record = null, Exception? inner = null)
        : base(Compose(source, problem, line, record), inner)
    {
        DataSource = source;
        Line = line;
        Record = record;
    }

    public DatasetFormatException(RecordLocation location, string problem, Exception? inner = null)
        : this(location.Source, problem, location.Line, location.Record, inner)
    {
    }

    /// <summary>The file path or in-memory source name.</summary>
    public string DataSource { get; }

    /// <summary>1-based line in the file, when known.</summary>
    public int? Line { get; }

    /// <summary>1-based record number (data rows only: a CSV header is not a record), when known.</summary>
    public int? Record { get; }

    private static string Compose(string source, string problem, int? line, int? record)
    {
        string where = (line, record) switch
        {
            (int l, int r) => $"{source}, record {r} (line {l})",
            (int l, null) => $"{source}, line {l}",
            (null, int r) => $"{source}, record {r}",
            _ => source,
        };
        return $"{where}: {problem}";
    }
}
