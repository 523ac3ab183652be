using System.Text;

namespace LoraPS.Data;

/// <summary>
/// CSV/TSV with a header row. With quoting (RFC 4180) a field that starts with <c>"</c> runs to the next lone
/// <c>"</c> and may hold delimiters and line breaks; <c>""</c> inside it is one quote. A quote in the middle of an
/// unquoted field is an ordinary character (as in Python's csv module). Empty and whitespace-only lines are skipped.
/// Every data row must have as many fields as the header.
/// </summary>
internal static class DelimitedRecordReader
{
    public static IEnumerable<DataRecord> Read(Func<TextReader> open, string source, char delimiter, QuoteMode quoting)
    {
        using TextReader reader = open();
        bool quotes = quoting switch
        {
            QuoteMode.Rfc4180 => true,
            QuoteMode.None => false,
            // PowerShell's Export-Csv quotes every field, the header too; GLUE's TSVs never quote.
            _ => delimiter != '\t' || reader.Peek() == '"',
        };
        var parser = new Parser(reader, source, delimiter, quotes);

        List<string>? header = parser.ReadRecord();
        if (header is null)
        {
            throw new DatasetFormatException(source, $"the file is empty. A {Name(delimiter)} dataset starts with a header row naming the columns.");
        }
        string[] names = CheckHeader(header, source, parser.RecordStartLine);

        int record = 0;
        while (parser.ReadRecord() is List<string> fields)
        {
            record++;
            var location = new RecordLocation(source, record, parser.RecordStartLine);
            if (fields.Count != names.Length)
            {
                throw new DatasetFormatException(location,
                    $"the row has {fields.Count} field{(fields.Count == 1 ? "" : "s")} but the header has {names.Length} ({string.Join(", ", names)}). " +
                    (quotes
                        ? $"Quote a field that contains {DelimiterName(delimiter)} or a line break (\"like, this\")."
                        : $"Fields cannot contain {DelimiterName(delimiter)}s in an unquoted {Name(delimiter)} file."));
            }
            var values = new Dictionary<string, object?>(names.Length, StringComparer.Ordinal);
            for (int i = 0; i < names.Length; i++)
            {
                values[names[i]] = fields[i];
            }
            yield return new DataRecord(location, values);
        }
        if (record == 0)
        {
            throw new DatasetFormatException(source, $"the file has a header row ({string.Join(", ", names)}) but no data rows.");
        }
    }

    private static string[] CheckHeader(List<string> header, string source, int line)
    {
        // Column names are trimmed: "text, label" means "label", and a stray space is never intended.
        string[] names = header.Select(h => h.Trim()).ToArray();
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        for (int i = 0; i < names.Length; i++)
        {
            if (names[i].Length == 0)
            {
                throw new DatasetFormatException(source,
                    $"column {i + 1} of the header row has no name (header: {string.Join(", ", header.Select(h => $"'{h}'"))}); every column needs a name.", line);
            }
            if (!seen.Add(names[i]))
            {
                throw new DatasetFormatException(source, $"the header row names column '{names[i]}' twice; column names must be unique.", line);
            }
        }
        return names;
    }

    private static string Name(char delimiter) => delimiter == '\t' ? "TSV" : "CSV";

    private static string DelimiterName(char delimiter) => delimiter switch
    {
        '\t' => "a tab",
        ',' => "a comma",
        _ => $"'{delimiter}'",
    };

    /// <summary>A character state machine over the text that counts physical lines (CRLF, LF or lone CR).</summary>
    private sealed class Parser(TextReader reader, string source, char delimiter, bool quotes)
    {
        private readonly StringBuilder _field = new();
        private int _line = 1;

        /// <summary>The line the last record returned by <see cref="ReadRecord"/> starts on.</summary>
        public int RecordStartLine { get; private set; }

        /// <summary>The next non-blank record's fields, or null at the end of the text.</summary>
        public List<string>? ReadRecord()
        {
            while (true)
            {
                RecordStartLine = _line;
                int c = Read();
                if (c == -1)
                {
                    return null;
                }
                if (c is '\n' or '\r')
                {
                    EndLine(c);
                    continue;
                }
                List<string> fields = ReadFields(c);
                if (fields.Count == 1 && string.IsNullOrWhiteSpace(fields[0]))
                {
                    continue;   // a whitespace-only line, e.g. at the end of a hand-edited file
                }
                return fields;
            }
        }

        private List<string> ReadFields(int c)
        {
            var fields = new List<string>();
            while (true)
            {
                _field.Clear();
                if (quotes && c == '"')
                {
                    c = ReadQuoted(fields.Count + 1);
                }
                else
                {
                    while (c != -1 && c != delimiter && c != '\n' && c != '\r')
                    {
                        _field.Append((char)c);
                        c = Read();
                    }
                }
                fields.Add(_field.ToString());
                if (c == delimiter)
                {
                    c = Read();
                    continue;
                }
                EndLine(c);
                return fields;
            }
        }

        /// <summary>Reads a quoted field after its opening quote; returns the character after the closing quote.</summary>
        private int ReadQuoted(int fieldNumber)
        {
            int openLine = _line;
            while (true)
            {
                int c = Read();
                if (c == -1)
                {
                    throw new DatasetFormatException(source,
                        $"field {fieldNumber} opens a quote that is never closed (the file ends inside it). " +
                        "Close the quoted field with \", and write a quote inside it as \"\".", openLine);
                }
                if (c == '"')
                {
                    if (reader.Peek() == '"')
                    {
                        Read();
                        _field.Append('"');
                        continue;
                    }
                    int next = Read();
                    if (next != -1 && next != delimiter && next != '\n' && next != '\r')
                    {
                        throw new DatasetFormatException(source,
                            $"field {fieldNumber} has '{(char)next}' after its closing quote. Inside a quoted field write a quote as \"\"; " +
                            $"after the closing quote only {DelimiterName(delimiter)} or the end of the line may follow.", _line);
                    }
                    return next;
                }
                _field.Append((char)c);
            }
        }

        /// <summary>Consumes the LF of a CRLF pair after <paramref name="c"/> (a no-op at the end of the text).</summary>
        private void EndLine(int c)
        {
            if (c == '\r' && reader.Peek() == '\n')
            {
                Read();
            }
        }

        /// <summary>Reads one character, counting a line at each LF and at each CR not followed by LF.</summary>
        private int Read()
        {
            int c;
            try
            {
                c = reader.Read();
                if (c == '\n' || (c == '\r' && reader.Peek() != '\n'))
                {
                    _line++;
                }
            }
            catch (DecoderFallbackException ex)
            {
                throw RecordReader.NotUtf8(source, _line, ex);
            }
            return c;
        }
    }
}
