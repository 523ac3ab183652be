using System.IO.Compression;
using System.Text;
using LoraPS.Data;
using Xunit;

namespace LoraPS.Tests.Data;

/// <summary>JSON, JSON Lines, CSV/TSV and in-memory records: values, record and line numbers, quoting edge cases.</summary>
public class RecordReaderTests
{
    [Fact]
    public void JsonArray_GivesTypedValues_AndTheLineEachRecordStartsOn()
    {
        using var dir = new TempDataFolder();
        string file = dir.Write("d.json", """
            [
              {"instruction": "Add.", "input": "1, 2", "output": "3"},
              {
                "text": "x", "n": 7, "f": 0.5, "b": true, "z": null,
                "list": [1, 2]
              },
              {"big": 12345678901234}
            ]
            """);
        List<DataRecord> records = RecordReader.ReadFile(file).ToList();

        Assert.Equal(3, records.Count);
        Assert.Equal(new RecordLocation(file, 1, 2), records[0].Location);
        Assert.Equal(new RecordLocation(file, 2, 3), records[1].Location);
        Assert.Equal(new RecordLocation(file, 3, 7), records[2].Location);
        Assert.Equal("1, 2", records[0].Fields["input"]);
        Assert.Equal(7L, records[1].Fields["n"]);
        Assert.Equal(0.5, records[1].Fields["f"]);
        Assert.Equal(true, records[1].Fields["b"]);
        Assert.Null(records[1].Fields["z"]);
        Assert.Equal(12345678901234L, records[2].Fields["big"]);
    }

    [Fact]
    public void JsonFileWithObjectsPerLine_IsReadAsJsonLines()
    {
        using var dir = new TempDataFolder();
        string file = dir.Write("d.json", "{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n");
        List<DataRecord> records = RecordReader.ReadFile(file).ToList();
        Assert.Equal(["a", "b"], records.Select(r => r.Fields["text"]));
        Assert.Equal(new RecordLocation(file, 2, 3), records[1].Location);
    }

    [Fact]
    public void JsonLines_SkipsBlankLines_CountsThem_AndHandlesCrlfAndBom()
    {
        using var dir = new TempDataFolder();
        byte[] body = Encoding.UTF8.GetBytes("{\"a\": 1}\r\n   \r\n{\"a\": \"\\u00e9\\n\"}\r\n");
        string file = dir.WriteBytes("d.jsonl", [0xEF, 0xBB, 0xBF, .. body]);
        List<DataRecord> records = RecordReader.ReadFile(file).ToList();
        Assert.Equal(2, records.Count);
        Assert.Equal(1L, records[0].Fields["a"]);
        Assert.Equal("é\n", records[1].Fields["a"]);
        Assert.Equal(new RecordLocation(file, 2, 3), records[1].Location);
    }

    [Fact]
    public void GzipFiles_AreDecompressed()
    {
        using var dir = new TempDataFolder();
        string file = Path.Combine(dir.Path, "d.jsonl.gz");
        using (var gz = new GZipStream(File.Create(file), CompressionLevel.Fastest))
        {
            gz.Write(Encoding.UTF8.GetBytes("{\"text\": \"zipped\"}\n"));
        }
        Assert.Equal(RecordFileFormat.JsonLines, RecordReader.FormatFromExtension(file));
        Assert.Equal("zipped", Assert.Single(RecordReader.ReadFile(file)).Fields["text"]);
    }

    [Fact]
    public void Csv_Rfc4180QuotingEdgeCases()
    {
        using var dir = new TempDataFolder();
        // Quoted comma; doubled quotes; a quoted CRLF and LF line break; empty fields (quoted and not); a trailing
        // empty field; a quote inside an unquoted field (literal, as Python's csv); a whitespace-only line; CRLF rows.
        string file = dir.Write("d.csv",
            "text , label\r\n" +
            "\"Hello, world\",1\r\n" +
            "\"She said \"\"hi\"\"\",0\r\n" +
            "\"two\r\nlines\nthree\",1\r\n" +
            "\"\",\r\n" +
            "   \r\n" +
            "5\" tall,2\n" +
            "last,\"x\"");
        List<DataRecord> records = RecordReader.ReadFile(file).ToList();

        Assert.Equal(6, records.Count);
        Assert.Equal(["text", "label"], records[0].Fields.Keys);   // header names are trimmed
        Assert.Equal(["Hello, world", "She said \"hi\"", "two\r\nlines\nthree", "", "5\" tall", "last"], records.Select(r => r.Fields["text"]));
        Assert.Equal(["1", "0", "1", "", "2", "x"], records.Select(r => r.Fields["label"]));
        // Lines: the record after the three-line field starts on line 7; the skipped blank line still counts.
        Assert.Equal([2, 3, 4, 7, 9, 10], records.Select(r => r.Location.Line!.Value));
        Assert.Equal([1, 2, 3, 4, 5, 6], records.Select(r => r.Location.Record));
    }

    [Fact]
    public void Tsv_GlueStyle_QuotesAreOrdinaryCharacters()
    {
        using var dir = new TempDataFolder();
        string file = dir.Write("d.tsv", "sentence\tlabel\n\"funny\" , he said \t1\nit 's \"\" odd\t0\n");
        List<DataRecord> records = RecordReader.ReadFile(file).ToList();
        Assert.Equal(["\"funny\" , he said ", "it 's \"\" odd"], records.Select(r => r.Fields["sentence"]));
        Assert.Equal(["1", "0"], records.Select(r => r.Fields["label"]));
    }

    [Fact]
    public void Tsv_StartingWithAQuote_IsReadWithQuoting_AsPowerShellExportCsvWritesIt()
    {
        using var dir = new TempDataFolder();
        // Export-Csv -Delimiter "`t" quotes every field, the header too.
        string file = dir.Write("d.tsv", "\"text\"\t\"label\"\r\n\"a\ttab\"\t\"1\"\r\n");
        DataRecord record = Assert.Single(RecordReader.ReadFile(file));
        Assert.Equal("a\ttab", record.Fields["text"]);
        Assert.Equal("1", record.Fields["label"]);

        // Forcing QuoteMode.None keeps the quotes as text (and the tab then splits the field).
        string plain = dir.Write("p.tsv", "\"text\"\n\"quoted\"\n");
        Assert.Equal("\"quoted\"", Assert.Single(RecordReader.ReadFile(plain, quoting: QuoteMode.None)).Fields["\"text\""]);
    }

    [Fact]
    public void InMemoryRecords_AreNumberedFromOne()
    {
        var rows = new List<IReadOnlyDictionary<string, object?>>
        {
            new Dictionary<string, object?> { ["text"] = "a" },
            new Dictionary<string, object?> { ["text"] = "b" },
        };
        List<DataRecord> records = RecordReader.FromDictionaries(rows).ToList();
        Assert.Equal(new RecordLocation("pipeline input", 2, null), records[1].Location);
        Assert.Equal("pipeline input, record 2", records[1].Location.ToString());
    }

    [Fact]
    public void PropertyLookup_IsExactThenCaseInsensitive()
    {
        var record = new DataRecord(new RecordLocation("s", 1, null), new Dictionary<string, object?> { ["Output"] = "x", ["input"] = "y" });
        Assert.True(record.TryGet("output", out string key, out object? value));
        Assert.Equal(("Output", "x"), (key, value));
        Assert.False(record.TryGet("response", out _, out _));

        var clash = new DataRecord(new RecordLocation("s", 4, null), new Dictionary<string, object?> { ["Text"] = "x", ["TEXT"] = "y" });
        var ex = Assert.Throws<DatasetFormatException>(() => clash.TryGet("text", out _, out _));
        Assert.Equal(4, ex.Record);
    }

    [Fact]
    public void FormatFromExtension()
    {
        Assert.Equal(RecordFileFormat.Json, RecordReader.FormatFromExtension("a/b.JSON"));
        Assert.Equal(RecordFileFormat.JsonLines, RecordReader.FormatFromExtension("b.ndjson"));
        Assert.Equal(RecordFileFormat.Csv, RecordReader.FormatFromExtension("b.csv.gz"));
        Assert.Equal(RecordFileFormat.Tsv, RecordReader.FormatFromExtension("b.tsv"));
        Assert.Contains("Json, JsonLines, Csv, Tsv", Assert.Throws<ArgumentException>(() => RecordReader.FormatFromExtension("b.txt")).Message);
    }
}
