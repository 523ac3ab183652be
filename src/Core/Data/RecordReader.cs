using System.IO.Compression;
using System.Text;

namespace LoraPS.Data;

/// <summary>The file formats a dataset can be read from.</summary>
public enum RecordFileFormat
{
    /// <summary>A JSON array of objects (Alpaca's format). A .json file whose first value is an object is read as JSON Lines, as Hugging Face datasets does.</summary>
    Json,

    /// <summary>One JSON object per line (.jsonl, .ndjson); blank lines are skipped.</summary>
    JsonLines,

    /// <summary>Comma-separated values with a header row and RFC 4180 quoting.</summary>
    Csv,

    /// <summary>Tab-separated values with a header row, e.g. GLUE's <c>sentence&lt;TAB&gt;label</c>.</summary>
    Tsv,
}

/// <summary>How double quotes in CSV/TSV fields are read.</summary>
public enum QuoteMode
{
    /// <summary>CSV: RFC 4180. TSV: RFC 4180 when the file starts with a quote (PowerShell's Export-Csv quotes every field), else none (GLUE's TSVs contain bare quotes in sentences).</summary>
    Auto,

    /// <summary>A field that starts with <c>"</c> is quoted: it may contain delimiters and newlines, and <c>""</c> is a literal quote.</summary>
    Rfc4180,

    /// <summary>Quotes are ordinary characters; fields cannot contain the delimiter or a newline (Python's <c>quotechar=None</c>).</summary>
    None,
}

/// <summary>
/// Reads raw records from JSON, JSON Lines, CSV and TSV files (optionally gzip-compressed, "train.jsonl.gz") and
/// from in-memory dictionaries. JSON Lines and CSV/TSV stream; a JSON array is parsed whole. Every problem is a
/// <see cref="DatasetFormatException"/> naming the file and the 1-based line and record.
/// </summary>
public static class RecordReader
{
    /// <summary>The source name used for records that did not come from a file.</summary>
    public const string PipelineSource = "pipeline input";

    /// <summary>The format implied by the file name's extension (a trailing .gz is ignored).</summary>
    /// <exception cref="ArgumentException">The extension is not one of .json, .jsonl, .ndjson, .csv, .tsv, .tab.</exception>
    public static RecordFileFormat FormatFromExtension(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string name = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? path[..^3] : path;
        return Path.GetExtension(name).ToLowerInvariant() switch
        {
            ".json" => RecordFileFormat.Json,
            ".jsonl" or ".ndjson" => RecordFileFormat.JsonLines,
            ".csv" => RecordFileFormat.Csv,
            ".tsv" or ".tab" => RecordFileFormat.Tsv,
            _ => throw new ArgumentException(
                $"Cannot tell the format of '{path}' from its extension; use .json, .jsonl, .csv or .tsv, or name the format (Json, JsonLines, Csv, Tsv).",
                nameof(path)),
        };
    }

    /// <summary>
    /// Reads the records of a file. The file is checked for existence now. A JSON array is parsed now (it cannot be
    /// streamed with line numbers); JSON Lines and CSV/TSV are read as the result is enumerated (enumerate once).
    /// </summary>
    /// <param name="path">The file; ".gz" at the end means gzip-compressed.</param>
    /// <param name="format">The format, or null to take it from the extension.</param>
    /// <param name="quoting">How CSV/TSV quotes are read.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DatasetFormatException">The file is empty, has no records, or is malformed (raised while enumerating).</exception>
    public static IEnumerable<DataRecord> ReadFile(string path, RecordFileFormat? format = null, QuoteMode quoting = QuoteMode.Auto)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Dataset file '{path}' does not exist.", path);
        }
        return (format ?? FormatFromExtension(path)) switch
        {
            RecordFileFormat.Json => JsonRecordReader.ReadJsonFile(path),
            RecordFileFormat.JsonLines => JsonRecordReader.ReadJsonLines(() => OpenText(path), path),
            RecordFileFormat.Csv => DelimitedRecordReader.Read(() => OpenText(path), path, ',', quoting),
            RecordFileFormat.Tsv => DelimitedRecordReader.Read(() => OpenText(path), path, '\t', quoting),
            _ => throw new ArgumentOutOfRangeException(nameof(format)),
        };
    }

    /// <summary>
    /// Wraps in-memory records (the PowerShell cmdlets turn pipeline objects into these) with 1-based record numbers.
    /// A null record is an error.
    /// </summary>
    public static IEnumerable<DataRecord> FromDictionaries(IEnumerable<IReadOnlyDictionary<string, object?>> records, string source = PipelineSource)
    {
        ArgumentNullException.ThrowIfNull(records);
        ArgumentNullException.ThrowIfNull(source);
        return Iterate();

        IEnumerable<DataRecord> Iterate()
        {
            int number = 0;
            foreach (IReadOnlyDictionary<string, object?>? fields in records)
            {
                number++;
                var location = new RecordLocation(source, number, null);
                yield return fields is null
                    ? throw new DatasetFormatException(location, "the record is null.")
                    : new DataRecord(location, fields);
            }
        }
    }

    /// <summary>Strict UTF-8 (invalid bytes are an error, not U+FFFD), BOM skipped, gzip when the name ends in .gz.</summary>
    internal static TextReader OpenText(string path) =>
        new StreamReader(OpenBinary(path), RecordReaderEncoding.StrictUtf8,
            detectEncodingFromByteOrderMarks: true, bufferSize: 1 << 16);

    internal static Stream OpenBinary(string path)
    {
        Stream file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        return path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress) : file;
    }

    /// <summary>Reads a line, turning an invalid-UTF-8 failure into an error that names the file and line.</summary>
    internal static string? ReadLine(TextReader reader, string source, int lineNumber)
    {
        try
        {
            return reader.ReadLine();
        }
        catch (DecoderFallbackException ex)
        {
            throw NotUtf8(source, lineNumber + 1, ex);
        }
    }

    internal static DatasetFormatException NotUtf8(string source, int line, Exception inner) =>
        new(source, "the file is not valid UTF-8 (the bad bytes are on this line or shortly after it); save it as UTF-8.", line, null, inner);
}
