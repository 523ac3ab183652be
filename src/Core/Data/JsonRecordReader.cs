using System.Text.Json;

namespace LoraPS.Data;

/// <summary>JSON arrays of objects and JSON Lines, with the line of every record kept for error messages.</summary>
internal static class JsonRecordReader
{
    private static readonly JsonReaderOptions ReaderOptions = new() { CommentHandling = JsonCommentHandling.Skip };
    private static readonly JsonDocumentOptions DocumentOptions = new() { CommentHandling = JsonCommentHandling.Skip };

    /// <summary>
    /// A .json file: an array of objects, or — when its first value is an object — JSON Lines (Hugging Face
    /// datasets reads both from ".json"). The array is parsed whole; records are produced as enumerated.
    /// </summary>
    public static IEnumerable<DataRecord> ReadJsonFile(string path)
    {
        byte[] bytes;
        using (Stream stream = RecordReader.OpenBinary(path))
        using (var buffer = new MemoryStream())
        {
            stream.CopyTo(buffer);
            bytes = buffer.ToArray();
        }
        int start = bytes.AsSpan().StartsWith("\uFEFF"u8) ? 3 : 0;
        int first = start;
        while (first < bytes.Length && bytes[first] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')
        {
            first++;
        }
        if (first == bytes.Length)
        {
            throw new DatasetFormatException(path, "the file is empty. A JSON dataset is an array of objects: [{\"instruction\": \"…\", \"output\": \"…\"}, …].");
        }
        return bytes[first] switch
        {
            (byte)'[' => ReadJsonArray(bytes, start, path),
            (byte)'{' => ReadJsonLines(() => new StreamReader(new MemoryStream(bytes), RecordReaderEncoding.StrictUtf8, true), path),
            _ => throw new DatasetFormatException(path,
                $"expected a JSON array of objects ('[' ) or JSON Lines ('{{' ), found '{(char)bytes[first]}'.", LineOf(bytes, first)),
        };
    }

    /// <summary>One JSON object per line; blank lines are skipped but counted.</summary>
    public static IEnumerable<DataRecord> ReadJsonLines(Func<TextReader> open, string source)
    {
        using TextReader reader = open();
        int lineNumber = 0;
        int record = 0;
        while (RecordReader.ReadLine(reader, source, lineNumber) is string line)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }
            record++;
            yield return ParseLine(line, new RecordLocation(source, record, lineNumber));
        }
        if (record == 0)
        {
            throw new DatasetFormatException(source, lineNumber == 0
                ? "the file is empty. JSON Lines has one object per line: {\"instruction\": \"…\", \"output\": \"…\"}."
                : "the file has only blank lines, no records.");
        }
    }

    private static DataRecord ParseLine(string line, RecordLocation location)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line, DocumentOptions);
        }
        catch (JsonException ex)
        {
            throw new DatasetFormatException(location,
                $"invalid JSON at byte {ex.BytePositionInLine + 1} of the line: {ErrorText(ex)} Each line must hold one complete JSON object.", ex);
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new DatasetFormatException(location, $"expected a JSON object, found {Describe(document.RootElement.ValueKind)}.");
            }
            return new DataRecord(location, ToFields(document.RootElement, location));
        }
    }

    // Not an iterator: Utf8JsonReader is a ref struct and cannot live across a yield.
    private static List<DataRecord> ReadJsonArray(byte[] bytes, int start, string source)
    {
        var records = new List<DataRecord>();
        var lines = new LineCounter(bytes);
        var reader = new Utf8JsonReader(bytes.AsSpan(start), ReaderOptions);
        bool closed = false;
        try
        {
            reader.Read();   // the '[' seen by the caller
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                var location = new RecordLocation(source, records.Count + 1, lines.LineAt(start + reader.TokenStartIndex));
                if (reader.TokenType != JsonTokenType.StartObject)
                {
                    throw new DatasetFormatException(location,
                        $"expected a JSON object, found {Describe(reader.TokenType)}. A JSON dataset is an array of objects.");
                }
                using JsonDocument document = JsonDocument.ParseValue(ref reader);
                records.Add(new DataRecord(location, ToFields(document.RootElement, location)));
            }
            closed = true;
            reader.Read();   // throws on anything but whitespace and comments
        }
        catch (JsonException ex)
        {
            int? line = ex.LineNumber is long l ? (int)l + 1 : null;
            if (closed)
            {
                throw new DatasetFormatException(source, "unexpected content after the closing ']' of the array; a JSON dataset is one array.", line, null, ex);
            }
            throw new DatasetFormatException(source,
                $"invalid JSON{(ex.BytePositionInLine is long b ? $" at byte {b + 1} of the line" : "")}" +
                $"{(records.Count > 0 ? $" (after record {records.Count})" : "")}: {ErrorText(ex)}", line, null, ex);
        }
        if (records.Count == 0)
        {
            throw new DatasetFormatException(source, "the JSON array is empty; there are no records.");
        }
        return records;
    }

    /// <summary>
    /// A JSON object as .NET values: strings, longs (or doubles when not integral), booleans, nulls; nested arrays
    /// and objects stay <see cref="JsonElement"/>s (and are rejected where text is needed).
    /// </summary>
    internal static Dictionary<string, object?> ToFields(JsonElement obj, RecordLocation location)
    {
        var fields = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (JsonProperty property in obj.EnumerateObject())
        {
            object? value = property.Value.ValueKind switch
            {
                JsonValueKind.String => StringOf(property.Value, location),
                JsonValueKind.Number => property.Value.TryGetInt64(out long integer) ? (object)integer : property.Value.GetDouble(),
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                JsonValueKind.Null => null,
                _ => property.Value.Clone(),
            };
            if (!fields.TryAdd(property.Name, value))
            {
                throw new DatasetFormatException(location, $"property '{property.Name}' appears twice in the object.");
            }
        }
        return fields;
    }

    private static string StringOf(JsonElement value, RecordLocation location)
    {
        try
        {
            return value.GetString()!;
        }
        catch (InvalidOperationException ex)
        {
            throw new DatasetFormatException(location, "a string is not valid UTF-8; save the file as UTF-8.", ex);
        }
    }

    /// <summary>System.Text.Json's message without its "Path: $ | LineNumber: …" tail, which we report ourselves.</summary>
    private static string ErrorText(JsonException ex)
    {
        string message = ex.Message;
        int tail = message.IndexOf(" Path:", StringComparison.Ordinal);
        if (tail < 0)
        {
            tail = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        }
        return (tail >= 0 ? message[..tail] : message).Trim();
    }

    private static string Describe(JsonTokenType type) => type switch
    {
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => type.ToString(),
    };

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };

    private static int LineOf(byte[] bytes, int offset) => new LineCounter(bytes).LineAt(offset);

    /// <summary>1-based line of increasing byte offsets, counting '\n' once.</summary>
    private sealed class LineCounter(byte[] bytes)
    {
        private long _position;
        private int _line = 1;

        public int LineAt(long offset)
        {
            for (; _position < offset && _position < bytes.Length; _position++)
            {
                if (bytes[_position] == (byte)'\n')
                {
                    _line++;
                }
            }
            return _line;
        }
    }
}

/// <summary>The one text encoding datasets are read with.</summary>
internal static class RecordReaderEncoding
{
    public static readonly System.Text.UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
}
