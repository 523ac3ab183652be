using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace LoraPS.Checkpoints;

/// <summary>
/// Parses and validates a safetensors header with the same rules as the Rust crate's strict reader
/// (<c>safetensors/src/tensor.rs</c>, <c>read_metadata</c> + <c>Metadata::validate</c>), but with an error that says
/// which tensor and which number is wrong instead of "InvalidOffset".
/// </summary>
/// <remarks>
/// Layout: bytes 0–7 are a little-endian u64 N; bytes 8..8+N are a UTF-8 JSON object mapping each tensor name to
/// <c>{"dtype", "shape", "data_offsets": [begin, end)}</c>, plus an optional <c>"__metadata__"</c> string→string map.
/// The data buffer follows; offsets are relative to it. A hand-written <see cref="Utf8JsonReader"/> walk is used instead
/// of <see cref="JsonDocument"/> because the format forbids duplicate keys and JsonDocument on net8.0 keeps them silently.
/// </remarks>
internal static class SafetensorsHeader
{
    /// <summary>The Rust crate's MAX_HEADER_SIZE: larger headers are refused before anything is allocated.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public const string MetadataKey = "__metadata__";

    private const string CorruptAdvice =
        "The file is truncated, corrupt or not a safetensors file; re-download it or export it again with a safetensors writer.";

    public sealed record Parsed(IReadOnlyDictionary<string, string> Metadata, IReadOnlyList<TensorEntry> Entries);

    public static CheckpointFormatException Error(string path, string problem, Exception? inner = null) =>
        new(path, problem, CorruptAdvice, inner);

    /// <summary>Checks the length prefix N against the file size; returns N as an int.</summary>
    public static int CheckHeaderLength(string path, ulong headerLength, long fileLength)
    {
        if (headerLength > MaxHeaderBytes)
        {
            throw Error(path, $"the header length prefix says {headerLength} bytes, more than the format's limit of {MaxHeaderBytes} bytes");
        }
        if (8 + (long)headerLength > fileLength)
        {
            throw Error(path, $"the header length prefix says {headerLength} bytes, but the file has only {fileLength - 8} bytes after the 8-byte prefix");
        }
        if (headerLength < 2)
        {
            throw Error(path, $"the header is {headerLength} bytes long; even an empty header needs '{{}}'");
        }
        return (int)headerLength;
    }

    /// <summary>Parses the header JSON and validates every entry against a data buffer of <paramref name="dataLength"/> bytes.</summary>
    public static Parsed Parse(string path, ReadOnlySpan<byte> json, long dataLength)
    {
        if (!Utf8.IsValid(json))
        {
            throw Error(path, "the header is not valid UTF-8");
        }
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var entries = new List<TensorEntry>();
        var keys = new HashSet<string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 16 });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                throw Error(path, $"the header is not a JSON object (it starts with a {reader.TokenType} token)");
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                string key = reader.GetString()!;
                if (!keys.Add(key))
                {
                    throw Error(path, $"the header has the key '{key}' twice");
                }
                reader.Read();
                if (key == MetadataKey)
                {
                    ReadMetadata(path, ref reader, metadata);
                }
                else
                {
                    entries.Add(ReadEntry(path, key, ref reader, dataLength));
                }
            }
            // Anything but padding whitespace after the closing brace makes Read() throw a JsonException.
            if (reader.Read())
            {
                throw Error(path, "the header has content after its JSON object");
            }
        }
        catch (JsonException e)
        {
            throw Error(path, $"the header is not valid JSON ({e.Message})", e);
        }
        ValidateLayout(path, entries, dataLength);
        return new Parsed(metadata, entries);
    }

    private static void ReadMetadata(string path, ref Utf8JsonReader reader, Dictionary<string, string> metadata)
    {
        if (reader.TokenType == JsonTokenType.Null)
        {
            return; // The Rust reader treats it as an Option: null means no metadata.
        }
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw Error(path, $"'{MetadataKey}' is a {reader.TokenType}, not an object of strings");
        }
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            string key = reader.GetString()!;
            reader.Read();
            if (reader.TokenType != JsonTokenType.String)
            {
                throw Error(path, $"'{MetadataKey}' entry '{key}' is a {reader.TokenType}; metadata values must be strings");
            }
            if (!metadata.TryAdd(key, reader.GetString()!))
            {
                throw Error(path, $"'{MetadataKey}' has the key '{key}' twice");
            }
        }
    }

    private static TensorEntry ReadEntry(string path, string name, ref Utf8JsonReader reader, long dataLength)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw Error(path, $"tensor '{name}' is described by a {reader.TokenType}, not an object with dtype, shape and data_offsets");
        }
        string? dtypeName = null;
        List<long>? shape = null;
        List<long>? offsets = null;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            string field = reader.GetString()!;
            if (!seen.Add(field))
            {
                throw Error(path, $"tensor '{name}' has the field '{field}' twice");
            }
            reader.Read();
            switch (field)
            {
                case "dtype":
                    if (reader.TokenType != JsonTokenType.String)
                    {
                        throw Error(path, $"tensor '{name}' has a dtype that is a {reader.TokenType}, not a string");
                    }
                    dtypeName = reader.GetString()!;
                    break;
                case "shape":
                    shape = ReadIntegers(path, name, "shape", ref reader);
                    break;
                case "data_offsets":
                    offsets = ReadIntegers(path, name, "data_offsets", ref reader);
                    break;
                default:
                    reader.Skip(); // Unknown fields are ignored, as serde does for the Rust reader.
                    break;
            }
        }
        if (dtypeName is null || shape is null || offsets is null)
        {
            string missing = dtypeName is null ? "dtype" : shape is null ? "shape" : "data_offsets";
            throw Error(path, $"tensor '{name}' has no \"{missing}\" field");
        }
        if (!SafetensorsDTypes.TryParse(dtypeName, out var dtype))
        {
            throw Error(path, $"tensor '{name}' has the unknown dtype '{dtypeName}' (known: {SafetensorsDTypes.KnownNames})");
        }
        if (offsets.Count != 2)
        {
            throw Error(path, $"tensor '{name}' has {offsets.Count} data_offsets; it needs exactly two, [begin, end]");
        }
        long begin = offsets[0], end = offsets[1];
        string shapeText = "[" + string.Join(", ", shape) + "]";
        long byteLength = CheckedByteLength(path, name, dtype, shape, shapeText);
        if (end < begin)
        {
            throw Error(path, $"tensor '{name}' has data_offsets [{begin}, {end}] that end before they begin");
        }
        if (end > dataLength)
        {
            throw Error(path, $"tensor '{name}' has data_offsets [{begin}, {end}] outside the data buffer, which has {dataLength} bytes");
        }
        if (end - begin != byteLength)
        {
            throw Error(path, $"tensor '{name}' has data_offsets [{begin}, {end}] spanning {end - begin} bytes, but dtype {dtype} with shape {shapeText} needs {byteLength} bytes");
        }
        return new TensorEntry(name, dtype, shape.ToArray(), begin, end);
    }

    /// <summary>prod(shape)·sizeof(dtype), refusing any intermediate overflow like the Rust reader's checked_mul fold.</summary>
    private static long CheckedByteLength(string path, string name, SafetensorsDType dtype, List<long> shape, string shapeText)
    {
        long elements = 1;
        try
        {
            foreach (long dim in shape)
            {
                elements = checked(elements * dim);
            }
            return checked(elements * dtype.SizeOf());
        }
        catch (OverflowException)
        {
            throw Error(path, $"tensor '{name}' has shape {shapeText}, whose byte size overflows a 64-bit integer");
        }
    }

    /// <summary>Reads an array of non-negative integers (shape dimensions or offsets; usize in the Rust reader).</summary>
    private static List<long> ReadIntegers(string path, string name, string field, ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            throw Error(path, $"tensor '{name}' has a {field} that is a {reader.TokenType}, not an array of integers");
        }
        var values = new List<long>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number)
            {
                throw Error(path, $"tensor '{name}' has a {field} element that is a {reader.TokenType}, not an integer");
            }
            string text = Encoding.UTF8.GetString(reader.ValueSpan);
            if (!reader.TryGetInt64(out long value))
            {
                bool integral = text.All(c => c is '-' || char.IsAsciiDigit(c));
                throw Error(path, integral
                    ? $"tensor '{name}' has a {field} element {text} that is too large"
                    : $"tensor '{name}' has a {field} element {text} that is not an integer");
            }
            if (value < 0)
            {
                throw Error(path, $"tensor '{name}' has a negative {field} element {text}");
            }
            values.Add(value);
        }
        return values;
    }

    /// <summary>
    /// The data buffer must be tiled exactly: sorted by offset, the tensors start at 0, touch without gaps or overlaps,
    /// and the last one ends at the end of the file. The header's key order does not matter (the Rust reader sorts too).
    /// </summary>
    private static void ValidateLayout(string path, List<TensorEntry> entries, long dataLength)
    {
        entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long expected = 0;
        string? previous = null;
        foreach (var entry in entries)
        {
            if (entry.Begin > expected)
            {
                throw Error(path, $"bytes [{expected}, {entry.Begin}) of the data buffer belong to no tensor (a gap before tensor '{entry.Name}')");
            }
            if (entry.Begin < expected)
            {
                throw Error(path, $"tensor '{entry.Name}' at [{entry.Begin}, {entry.End}) overlaps tensor '{previous}', which ends at {expected}");
            }
            expected = entry.End;
            previous = entry.Name;
        }
        if (expected != dataLength)
        {
            throw Error(path, $"the tensors cover {expected} bytes of the data buffer but the file has {dataLength} data bytes; the data does not end at the end of the file");
        }
    }
}
