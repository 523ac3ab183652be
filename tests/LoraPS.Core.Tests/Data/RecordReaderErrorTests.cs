using LoraPS.Data;
using Xunit;

namespace LoraPS.Tests.Data;

/// <summary>Every malformed or empty input gives a <see cref="DatasetFormatException"/> naming the file, line and record.</summary>
public class RecordReaderErrorTests
{
    private static DatasetFormatException Fails(string fileName, string content, QuoteMode quoting = QuoteMode.Auto)
    {
        using var dir = new TempDataFolder();
        string file = dir.Write(fileName, content);
        var ex = Assert.Throws<DatasetFormatException>(() => RecordReader.ReadFile(file, quoting: quoting).ToList());
        Assert.Equal(file, ex.DataSource);
        Assert.StartsWith(file, ex.Message);
        return ex;
    }

    private static string Lines(int count, Func<int, string> line) => string.Concat(Enumerable.Range(1, count).Select(i => line(i) + "\n"));

    [Fact]
    public void Missing_File()
    {
        var ex = Assert.Throws<FileNotFoundException>(() => RecordReader.ReadFile("/nonexistent/train.json"));
        Assert.Contains("'/nonexistent/train.json' does not exist", ex.Message);
    }

    [Theory]
    [InlineData("e.json", "")]
    [InlineData("e.json", "  \n\t ")]
    [InlineData("e.jsonl", "")]
    [InlineData("e.csv", "")]
    [InlineData("e.tsv", "\n\n")]
    public void Empty_File(string name, string content)
    {
        Assert.Contains("the file is empty", Fails(name, content).Message);
    }

    [Fact]
    public void No_Records()
    {
        Assert.Contains("the JSON array is empty", Fails("e.json", "[ ]").Message);
        Assert.Contains("only blank lines", Fails("e.jsonl", "\n  \n").Message);
        var csv = Fails("e.csv", "instruction,output\r\n");
        Assert.Contains("header row (instruction, output) but no data rows", csv.Message);
    }

    [Fact]
    public void JsonLines_BadJsonOnLine17()
    {
        string content = Lines(16, i => $"{{\"text\": \"line {i}\"}}") + "{\"text\": \"oops\" \"label\": 1}\n";
        var ex = Fails("d.jsonl", content);
        Assert.Equal(17, ex.Line);
        Assert.Equal(17, ex.Record);
        Assert.Contains("line 17", ex.Message);
        Assert.Contains("invalid JSON at byte 17 of the line: '\"' is invalid after a value", ex.Message);
    }

    [Fact]
    public void JsonLines_BlankLinesCount_ForLineButNotForRecord()
    {
        var ex = Fails("d.jsonl", "{\"a\": 1}\n\n\n[1, 2]\n");
        Assert.Equal((4, 2), (ex.Line!.Value, ex.Record!.Value));
        Assert.Contains("expected a JSON object, found an array", ex.Message);
    }

    [Fact]
    public void JsonArray_BadJsonOnLine17()
    {
        string content = "[\n" + string.Concat(Enumerable.Range(1, 15).Select(i => $"  {{\"text\": \"r{i}\"}},\n")) + "  {\"text\": \"r16\",, }\n]";
        var ex = Fails("d.json", content);
        Assert.Equal(17, ex.Line);
        Assert.Contains("line 17", ex.Message);
        Assert.Contains("after record 15", ex.Message);
    }

    [Fact]
    public void JsonArray_UnclosedArray_And_ElementNotAnObject_And_TrailingContent()
    {
        Assert.Contains("invalid JSON", Fails("d.json", "[{\"a\": 1},\n{\"a\": 2}\n").Message);

        var notObject = Fails("d.json", "[{\"a\": 1},\n\"just a string\"]");
        Assert.Equal((2, 2), (notObject.Line!.Value, notObject.Record!.Value));
        Assert.Contains("expected a JSON object, found a string", notObject.Message);

        var trailing = Fails("d.json", "[{\"a\": 1}]\n[{\"a\": 2}]");
        Assert.Equal(2, trailing.Line);
        Assert.Contains("after the closing ']'", trailing.Message);

        var scalar = Fails("d.json", "\n\n42");
        Assert.Equal(3, scalar.Line);
        Assert.Contains("expected a JSON array of objects", scalar.Message);
    }

    [Fact]
    public void Json_DuplicateProperty()
    {
        var ex = Fails("d.json", "[{\"a\": 1},\n {\"a\": 1, \"a\": 2}]");
        Assert.Equal((2, 2), (ex.Line!.Value, ex.Record!.Value));
        Assert.Contains("property 'a' appears twice", ex.Message);
    }

    [Fact]
    public void Csv_UnterminatedQuote_NamesTheLineItOpensOn()
    {
        var ex = Fails("d.csv", "text,label\na,1\nb,2\n\"never closed,3\nmore\n");
        Assert.Equal(4, ex.Line);
        Assert.Contains("field 1 opens a quote that is never closed", ex.Message);
    }

    [Fact]
    public void Csv_CharacterAfterClosingQuote()
    {
        var ex = Fails("d.csv", "text,label\n\"a\"b,1\n");
        Assert.Equal(2, ex.Line);
        Assert.Contains("field 1 has 'b' after its closing quote", ex.Message);
    }

    [Fact]
    public void Csv_WrongFieldCount_NamesLineRecordAndHeader()
    {
        var ex = Fails("d.csv", "text,label\n\"multi\nline\",1\nhello, world,1\n");
        Assert.Equal((4, 2), (ex.Line!.Value, ex.Record!.Value));
        Assert.Contains("the row has 3 fields but the header has 2 (text, label)", ex.Message);
        Assert.Contains("Quote a field that contains a comma", ex.Message);

        var tsv = Fails("d.tsv", "sentence\tlabel\nno label here\n");
        Assert.Contains("the row has 1 field but the header has 2", tsv.Message);
    }

    [Fact]
    public void Csv_BadHeader()
    {
        Assert.Contains("column 2 of the header row has no name", Fails("d.csv", "text,,label\na,b,c\n").Message);
        Assert.Contains("names column 'Text' twice", Fails("d.csv", "text,Text\na,b\n").Message);
    }

    [Fact]
    public void InvalidUtf8_IsAnError_NotReplacementCharacters()
    {
        using var dir = new TempDataFolder();
        string file = dir.WriteBytes("d.csv", [.. "text,label\nok,1\n"u8, 0xC3, 0x28, .. ",0\n"u8]);
        var ex = Assert.Throws<DatasetFormatException>(() => RecordReader.ReadFile(file).ToList());
        Assert.Contains("not valid UTF-8", ex.Message);

        string json = dir.WriteBytes("d.json", [.. "[{\"text\": \""u8, 0xFF, .. "\"}]"u8]);
        Assert.Contains("UTF-8", Assert.Throws<DatasetFormatException>(() => RecordReader.ReadFile(json).ToList()).Message);
    }

    [Fact]
    public void NullInMemoryRecord()
    {
        var ex = Assert.Throws<DatasetFormatException>(() => RecordReader.FromDictionaries([new Dictionary<string, object?>(), null!]).ToList());
        Assert.Equal("pipeline input, record 2: the record is null.", ex.Message);
    }
}
