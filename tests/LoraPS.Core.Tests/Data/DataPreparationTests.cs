using LoraPS.Data;
using LoraPS.Tests.Tokenization;
using LoraPS.Tokenization;
using Xunit;

namespace LoraPS.Tests.Data;

/// <summary>The one-call preparation: split by fraction or dataset, mixing, tokenization, fingerprint, checks.</summary>
public class DataPreparationTests
{
    private static readonly TextTokenizer Stories = TextTokenizer.Load(TokenizerFixtures.Stories260K);

    private static Dataset Instructions(int count, string prefix) => new("mem", DatasetFormat.Instruction, new PropertyMapping(),
        Enumerable.Range(0, count).Select(i => (DatasetExample)new InstructionExample($"{prefix} {i}", "", $"answer {i}")).ToList());

    [Fact]
    public void ValidationFraction_SplitsThenTokenizesBoth()
    {
        Dataset data = Instructions(40, "task");
        PreparedData prepared = DataPreparation.Prepare(data, Stories, new DataPreparationOptions
        {
            ValidationFraction = 0.1,
            Tokenization = new TokenizationOptions { MaskPrompt = true, PromptStyle = PromptStyles.Plain },
        });
        Assert.Equal((36, 4), (prepared.Train.Count, prepared.Validation!.Count));
        Assert.Equal(data.Examples.Select(e => e.ToString()).Order(StringComparer.Ordinal),
            prepared.TrainExamples.Concat(prepared.ValidationExamples).Select(e => e.ToString()).Order(StringComparer.Ordinal));
        var tokenizer = new ExampleTokenizer(Stories, new TokenizationOptions { MaskPrompt = true, PromptStyle = PromptStyles.Plain });
        Assert.Equal(tokenizer.Tokenize(prepared.ValidationExamples[2]).Labels, prepared.Validation[2].Labels);
        Assert.Equal(0, prepared.MixedInCount);
        Assert.Equal(DatasetFormat.Instruction, prepared.Format);
    }

    [Fact]
    public void MixIn_AndFingerprintFollowsSeedAndSettings()
    {
        Dataset task = Instructions(80, "task");
        Dataset general = Instructions(500, "general");
        var options = new DataPreparationOptions { MixFraction = 0.2, Seed = 1 };
        PreparedData prepared = DataPreparation.Prepare(task, Stories, options, mixIn: general);
        Assert.Equal(20, prepared.MixedInCount);
        Assert.Equal(100, prepared.Train.Count);
        Assert.Equal(20, prepared.TrainExamples.Count(e => ((InstructionExample)e).Instruction.StartsWith("general", StringComparison.Ordinal)));
        Assert.Null(prepared.Validation);

        Assert.Equal(prepared.Fingerprint, DataPreparation.Prepare(task, Stories, options, mixIn: general).Fingerprint);
        Assert.NotEqual(prepared.Fingerprint, DataPreparation.Prepare(task, Stories, options with { Seed = 2 }, mixIn: general).Fingerprint);
        Assert.NotEqual(prepared.Fingerprint, DataPreparation.Prepare(task, Stories, options with { MixFraction = 0.3 }, mixIn: general).Fingerprint);
        Assert.NotEqual(prepared.Fingerprint, DataPreparation.Prepare(task, Stories, options).Fingerprint);
    }

    [Fact]
    public void ValidationDataset_Sst2WithTrainingLabels()
    {
        Dataset test = DatasetReader.ReadFile(DataFixtures.Sst2("test"));
        var small = test.WithExamples(test.Examples.Take(50).ToList());
        var validation = test.WithExamples(test.Examples.Skip(50).Take(10).ToList());
        PreparedData prepared = DataPreparation.Prepare(small, Stories, validation: validation);
        Assert.Equal((50, 10), (prepared.Train.Count, prepared.Validation!.Count));
        Assert.Equal(["0", "1"], prepared.Labels!.Names);
        Assert.All(prepared.Train, t => Assert.NotNull(t.ClassLabel));
    }

    [Fact]
    public void Rejects_BothValidationSources_OtherFormats_OtherLabels()
    {
        Dataset data = Instructions(10, "x");
        Assert.Contains("either a validation dataset or a validation fraction",
            Assert.Throws<ArgumentException>(() => DataPreparation.Prepare(data, Stories, new DataPreparationOptions { ValidationFraction = 0.1 }, validation: data)).Message);

        var text = new Dataset("t.jsonl", DatasetFormat.Text, new PropertyMapping { TextProperty = "text" }, [new TextExample("a")]);
        Assert.Contains("The mixed-in dataset (t.jsonl) is Text data but the training dataset (mem) is Instruction data",
            Assert.Throws<ArgumentException>(() => DataPreparation.Prepare(data, Stories, mixIn: text)).Message);

        var labelsA = new Dataset("a", DatasetFormat.Classification, new PropertyMapping(), [new ClassificationExample("x", null, 0)], LabelMap.FromNames(["neg", "pos"]));
        var labelsB = new Dataset("b", DatasetFormat.Classification, new PropertyMapping(), [new ClassificationExample("x", null, 0)], LabelMap.FromNames(["no", "yes"]));
        Assert.Contains("read it with the training labels", Assert.Throws<ArgumentException>(() => DataPreparation.Prepare(labelsA, Stories, validation: labelsB)).Message);
    }
}
