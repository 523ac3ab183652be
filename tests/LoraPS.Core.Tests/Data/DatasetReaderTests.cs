using LoraPS.Data;
using Xunit;

namespace LoraPS.Tests.Data;

/// <summary>Format detection, property mapping, label maps and per-record errors, on files and in-memory records.</summary>
public class DatasetReaderTests
{
    private static Dictionary<string, object?> Row(params (string Key, object? Value)[] fields) =>
        fields.ToDictionary(f => f.Key, f => f.Value);

    private static Dataset Read(DatasetReadOptions? options, params Dictionary<string, object?>[] rows) =>
        DatasetReader.FromDictionaries(rows, options);

    [Fact]
    public void Alpaca_IsDetected_InputIsOptional_AndNullInputIsEmpty()
    {
        Dataset d = Read(null,
            Row(("instruction", "Add."), ("input", "1, 2"), ("output", "3")),
            Row(("instruction", "Greet."), ("output", "Hi")),
            Row(("instruction", "Greet."), ("input", null), ("output", "Hi")));
        Assert.Equal(DatasetFormat.Instruction, d.Format);
        Assert.Equal("prompt=instruction, input=input, response=output", d.Mapping.ToString());
        Assert.Equal([new InstructionExample("Add.", "1, 2", "3"), new InstructionExample("Greet.", "", "Hi"), new InstructionExample("Greet.", "", "Hi")], d.Examples);
        Assert.Null(d.Labels);
    }

    [Fact]
    public void Detection_OfOtherInstructionNames_Text_AndClassification()
    {
        Dataset arithmetic = Read(null, Row(("context", "Q: 1+1?\nA:"), ("completion", " 2")));
        Assert.Equal(DatasetFormat.Instruction, arithmetic.Format);
        Assert.Equal(new InstructionExample("Q: 1+1?\nA:", "", " 2"), arithmetic.Examples[0]);

        Dataset gsm = Read(null, Row(("question", "q"), ("answer", "a")));
        Assert.Equal("prompt=question, response=answer", gsm.Mapping.ToString());

        Dataset text = Read(null, Row(("text", "Once upon a time."), ("meta", 3L)));
        Assert.Equal(DatasetFormat.Text, text.Format);
        Assert.Equal(new TextExample("Once upon a time."), text.Examples[0]);

        Dataset sst = Read(null, Row(("sentence", "great"), ("label", "1")), Row(("sentence", "bad"), ("label", "0")));
        Assert.Equal(DatasetFormat.Classification, sst.Format);
        Assert.Equal([new ClassificationExample("great", null, 1), new ClassificationExample("bad", null, 0)], sst.Examples);

        Dataset labelledText = Read(null, Row(("text", "t"), ("label", 0L)));
        Assert.Equal(DatasetFormat.Classification, labelledText.Format);

        Dataset qnli = Read(null, Row(("question", "Who?"), ("sentence", "Me."), ("label", "entailment")));
        Assert.Equal("text=question, textPair=sentence, label=label", qnli.Mapping.ToString());
        Assert.Equal(new ClassificationExample("Who?", "Me.", 0), qnli.Examples[0]);

        Dataset mnli = Read(null, Row(("premise", "p"), ("hypothesis", "h"), ("label", 2L)));
        Assert.Equal(new ClassificationExample("p", "h", 2), mnli.Examples[0]);
    }

    [Fact]
    public void ExplicitMapping_WinsAndIsCaseInsensitive()
    {
        var options = new DatasetReadOptions { Properties = new PropertyMapping { PromptProperty = "Q", ResponseProperty = "a", InputProperty = "ctx" } };
        Dataset d = Read(options, Row(("q", "What?"), ("A", "That."), ("ctx", "c"), ("instruction", "ignored"), ("output", "ignored")));
        Assert.Equal(DatasetFormat.Instruction, d.Format);
        Assert.Equal("prompt=q, input=ctx, response=A", d.Mapping.ToString());
        Assert.Equal(new InstructionExample("What?", "c", "That."), d.Examples[0]);

        var textOnly = new DatasetReadOptions { Format = DatasetFormat.Text, Properties = new PropertyMapping { TextProperty = "sentence" } };
        Assert.Equal(new TextExample("s"), Read(textOnly, Row(("sentence", "s"), ("label", 1L))).Examples[0]);
    }

    [Fact]
    public void ScalarValuesBecomeText_InTheInvariantCulture()
    {
        Dataset d = Read(null, Row(("instruction", 12.5), ("output", 7L)), Row(("instruction", true), ("output", 1e21)));
        Assert.Equal(new InstructionExample("12.5", "", "7"), d.Examples[0]);
        Assert.Equal(new InstructionExample("True", "", "1E+21"), d.Examples[1]);
    }

    [Fact]
    public void Labels_Integers_AreClassIds_StringsAreSortedNames()
    {
        Dataset ints = Read(null, Row(("text", "a"), ("label", 2L)), Row(("text", "b"), ("label", "0 ")), Row(("text", "c"), ("label", 1.0)));
        Assert.True(ints.Labels!.IntegerLabels);
        Assert.Equal(["0", "1", "2"], ints.Labels.Names);
        Assert.Equal([2, 0, 1], ints.Examples.Cast<ClassificationExample>().Select(e => e.Label));

        Dataset names = Read(null,
            Row(("text", "a"), ("label", "positive")), Row(("text", "b"), ("label", "negative")), Row(("text", "c"), ("label", "neutral")),
            Row(("text", "d"), ("label", "positive")));
        Assert.False(names.Labels!.IntegerLabels);
        Assert.Equal(["negative", "neutral", "positive"], names.Labels.Names);
        Assert.Equal("0=negative, 1=neutral, 2=positive", names.Labels.ToString());
        Assert.Equal([2, 0, 1, 2], names.Examples.Cast<ClassificationExample>().Select(e => e.Label));

        // Mixed numbers and names are all names; booleans are names too.
        Assert.Equal(["1", "yes"], Read(null, Row(("text", "a"), ("label", 1L)), Row(("text", "b"), ("label", "yes"))).Labels!.Names);
        Assert.Equal(["False", "True"], Read(null, Row(("text", "a"), ("label", true)), Row(("text", "b"), ("label", false))).Labels!.Names);
    }

    [Fact]
    public void Labels_AValidationSetUsesTheTrainingMap()
    {
        Dataset train = Read(null, Row(("text", "a"), ("label", "pos")), Row(("text", "b"), ("label", "neg")));
        var withTrainMap = new DatasetReadOptions { Labels = train.Labels };
        Dataset validation = Read(withTrainMap, Row(("text", "c"), ("label", "pos")));
        Assert.Same(train.Labels, validation.Labels);
        Assert.Equal(1, ((ClassificationExample)validation.Examples[0]).Label);

        var ex = Assert.Throws<DatasetFormatException>(() => Read(withTrainMap, Row(("text", "c"), ("label", "pos")), Row(("text", "d"), ("label", "meh"))));
        Assert.Equal("pipeline input, record 2: label 'meh' is not one of the labels of the training data (0=neg, 1=pos).", ex.Message);

        Dataset intTrain = Read(null, Row(("text", "a"), ("label", 0L)), Row(("text", "b"), ("label", 1L)));
        var intEx = Assert.Throws<DatasetFormatException>(() => Read(new DatasetReadOptions { Labels = intTrain.Labels }, Row(("text", "c"), ("label", 2L))));
        Assert.Contains("label '2' is not one of the 2 class ids (0 … 1)", intEx.Message);
    }

    [Fact]
    public void Errors_MissingPropertyInRecord3_ListsTheProperties()
    {
        var ex = Assert.Throws<DatasetFormatException>(() => Read(null,
            Row(("instruction", "a"), ("output", "b")),
            Row(("instruction", "a"), ("output", "b")),
            Row(("instruction", "a"), ("input", "x"), ("response", "b"))));
        Assert.Equal(3, ex.Record);
        Assert.Equal("pipeline input, record 3: missing property 'output' (the response); the record has instruction, input, response. " +
            "Every record needs it, or set ResponseProperty to another property.", ex.Message);
    }

    [Fact]
    public void Errors_InAFile_NameTheLine()
    {
        using var dir = new TempDataFolder();
        string file = dir.Write("train.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n\n{\"instruction\": \"c\", \"output\": null}\n");
        var ex = Assert.Throws<DatasetFormatException>(() => DatasetReader.ReadFile(file));
        Assert.Equal((3, 2), (ex.Line!.Value, ex.Record!.Value));
        Assert.Equal($"{file}, record 2 (line 3): property 'output' (the response) is null; every record needs a response.", ex.Message);

        string csv = dir.Write("train.csv", "sentence,label\ngood,1\nbad,\n");
        var label = Assert.Throws<DatasetFormatException>(() => DatasetReader.ReadFile(csv));
        Assert.Equal($"{csv}, record 2 (line 3): the label is empty; every record needs a label.", label.Message);
    }

    [Fact]
    public void Errors_NonTextValues_AndBadLabels()
    {
        using var dir = new TempDataFolder();
        string file = dir.Write("d.json", "[{\"instruction\": \"a\", \"output\": [\"b\"]}]");
        Assert.EndsWith("record 1 (line 1): property 'output' is an array; expected text.", Assert.Throws<DatasetFormatException>(() => DatasetReader.ReadFile(file)).Message);

        Assert.Contains("property 'output' is a list", Assert.Throws<DatasetFormatException>(() => Read(null, Row(("instruction", "a"), ("output", new[] { "x" })))).Message);

        var negative = Assert.Throws<DatasetFormatException>(() => Read(null, Row(("text", "a"), ("label", 1L)), Row(("text", "b"), ("label", -1L))));
        Assert.Equal(2, negative.Record);
        Assert.Contains("label -1 is negative", negative.Message);

        var fractional = Assert.Throws<DatasetFormatException>(() => Read(null, Row(("text", "a"), ("label", 0.5))));
        Assert.Contains("label 0.5 is not a whole number", fractional.Message);

        var nullLabel = Assert.Throws<DatasetFormatException>(() => Read(null, Row(("text", "a"), ("label", null))));
        Assert.Contains("record 1: the label is null", nullLabel.Message);

        var missingLabel = Assert.Throws<DatasetFormatException>(() => Read(null, Row(("text", "a"), ("label", 1L)), Row(("text", "b"))));
        Assert.Contains("record 2: missing property 'label' (the label); the record has text.", missingLabel.Message);
    }

    [Fact]
    public void Errors_FormatCannotBeDetected_OrIsAmbiguous()
    {
        var unknown = Assert.Throws<DatasetFormatException>(() => Read(null, Row(("foo", "a"), ("bar", "b"))));
        Assert.StartsWith("pipeline input, record 1: cannot tell the dataset format from the properties foo, bar.", unknown.Message);

        var ambiguous = Assert.Throws<DatasetFormatException>(() => Read(null, Row(("instruction", "a"), ("output", "b"), ("text", "c"), ("label", 1L))));
        Assert.Contains("cannot tell whether this is instruction or classification data", ambiguous.Message);

        var missing = Assert.Throws<DatasetFormatException>(() => Read(new DatasetReadOptions { Format = DatasetFormat.Instruction }, Row(("instruction", "a"), ("reply", "b"))));
        Assert.Contains("no property for the response: looked for 'output', 'response', 'completion', 'answer'; the record has instruction, reply. Set ResponseProperty", missing.Message);

        Assert.Equal("pipeline input: there are no records.", Assert.Throws<DatasetFormatException>(() => Read(null)).Message);
    }

    [Fact]
    public void BundledAlpacaSubset()
    {
        Dataset d = DatasetReader.ReadFile(DataFixtures.AlpacaSubset);
        Assert.Equal(DatasetFormat.Instruction, d.Format);
        Assert.Equal(5000, d.Count);
        var examples = d.Examples.Cast<InstructionExample>().ToList();
        Assert.Equal(1943, examples.Count(e => e.Input.Length > 0));
        Assert.Equal(new InstructionExample("Are the two sentences below grammatically correct? Output yes or no.",
            "Sentence 1: I am going to the store.\nSentence 2: I goes to the store.", "No"), examples[0]);
    }

    [Fact]
    public void BundledSst2()
    {
        Dataset test = DatasetReader.ReadFile(DataFixtures.Sst2("test"));
        Assert.Equal(DatasetFormat.Classification, test.Format);
        Assert.Equal(872, test.Count);
        Assert.Equal(["0", "1"], test.Labels!.Names);
        Assert.Equal(new ClassificationExample("it 's a charming and often affecting journey . ", null, 1), test.Examples[0]);

        Dataset dev = DatasetReader.ReadFile(DataFixtures.Sst2("dev"), new DatasetReadOptions { Labels = test.Labels });
        Assert.Equal(6735, dev.Count);

        Dataset train = DatasetReader.ReadFile(DataFixtures.Sst2("train"));
        Assert.Equal(60614, train.Count);
        Assert.Equal(33828, train.Examples.Cast<ClassificationExample>().Count(e => e.Label == 1));
    }

    [Fact]
    public void BundledArithmetic()
    {
        string[] files = Directory.GetFiles(Path.Combine(DataFixtures.DataRoot, "arithmetic"), "*.jsonl");
        Assert.Equal(13, files.Length);
        foreach (string file in files)
        {
            Dataset d = DatasetReader.ReadFile(file);
            Assert.Equal(2000, d.Count);
            Assert.Equal("prompt=context, response=completion", d.Mapping.ToString());
        }
        var first = (InstructionExample)DatasetReader.ReadFile(DataFixtures.Arithmetic("two_digit_addition")).Examples[0];
        Assert.Equal(new InstructionExample("\n\nQ: What is 98 plus 45?\n\nA:", "", " 143"), first);
    }
}
