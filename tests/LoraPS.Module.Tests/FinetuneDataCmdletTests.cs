using System.Management.Automation;
using System.Text.Json;
using LoraPS.Training;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>Start-LoraFinetune's data options: validation, pipeline records, mixing, truncation and bad data.</summary>
[Collection(ModuleCollection.Name)]
public sealed class FinetuneDataCmdletTests(RunspaceFixture fixture) : FinetuneTestKit(fixture)
{
    const string QuestionRecords =
        "1..16 | ForEach-Object { [pscustomobject]@{ Question = \"What is $_ plus 1?\"; Answer = \"It is $($_ + 1).\" } }";

    static JsonElement RunData(string run) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "run.json"))).RootElement.GetProperty("data");

    [Fact]
    public void AValidationFractionGivesValidationMetricsBeforeAndAfter()
    {
        RunClean(ModelWithAdapter + "; " + SixteenExamples);
        var result = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{Path.Combine(Temp, "run")}' {SmallRun} -ValidationFraction 0.25 -InitialValidation");

        Assert.Equal(4, result.FinalValidation!.Examples);
        Assert.Null(result.FinalValidation.Accuracy);
        Assert.Equal(result.FinalValidationLoss, result.FinalValidation.Loss);
        Assert.Equal(Math.Exp(result.FinalValidation.Loss), result.FinalValidation.Perplexity, 9);
        Assert.NotNull(result.InitialValidation);
        Assert.True(result.FinalValidation.Loss < result.InitialValidation.Loss,
            $"validation loss {result.InitialValidation.Loss} → {result.FinalValidation.Loss}");
        Assert.Equal(12, RunData(Path.Combine(Temp, "run")).GetProperty("train_examples").GetInt32());
    }

    [Fact]
    public void AValidationFileIsReadWithTheSameMapping()
    {
        string file = Path.Combine(Temp, "validation.csv");
        File.WriteAllLines(file, ["Question,Answer", "What is 1 plus 1?,It is 2.", "What is 2 plus 2?,It is 4.", "What is 3 plus 3?,It is 6."]);
        RunClean(ModelWithAdapter);
        var result = Train($"{QuestionRecords} | Start-LoraFinetune -Model $ftModel -PromptProperty Question -ResponseProperty Answer " +
            $"-ValidationPath '{file}' -OutputPath '{Path.Combine(Temp, "run")}' {SmallRun}");
        Assert.Equal(3, result.FinalValidation!.Examples);

        var error = Fails($"{QuestionRecords} | Start-LoraFinetune -Model $ftModel -PromptProperty Question -ResponseProperty Answer " +
            $"-ValidationPath '{file}' -ValidationFraction 0.1 -OutputPath '{Path.Combine(Temp, "run2")}' {SmallRun}", "InvalidArgument");
        Assert.Contains("-ValidationPath", error.Exception.Message);
    }

    [Fact]
    public void PipelineRecordsTrainDirectlyWithPropertyMapping()
    {
        string run = Path.Combine(Temp, "run");
        RunClean(ModelWithAdapter);
        var result = Train($"{QuestionRecords} | Start-LoraFinetune -Model $ftModel -PromptProperty Question -ResponseProperty Answer -OutputPath '{run}' {SmallRun}");
        Assert.Equal((StopReason.Completed, 6L), (result.StopReason, result.Steps));
        var data = RunData(run);
        Assert.Equal(16, data.GetProperty("train_examples").GetInt32());
        Assert.Equal("Instruction", data.GetProperty("format").GetString());

        // A Dataset object from the pipeline is still a dataset, not a record.
        RunClean(ModelWithAdapter + "; " + SixteenExamples);
        Assert.Equal(StopReason.Completed, Train($"$ftData | Start-LoraFinetune -Model $ftModel -OutputPath '{Path.Combine(Temp, "run2")}' {SmallRun}").StopReason);
    }

    [Fact]
    public void ARecordWithoutTheMappedPropertyIsAnErrorNamingTheRecord()
    {
        RunClean(ModelWithAdapter);
        string run = Path.Combine(Temp, "run");
        var error = Fails("@([pscustomobject]@{ Question = 'a'; Answer = 'b' }, [pscustomobject]@{ Question = 'c'; Answer = 'd' }, [pscustomobject]@{ Question = 'e' }) | " +
            $"Start-LoraFinetune -Model $ftModel -PromptProperty Question -ResponseProperty Answer -OutputPath '{run}' {SmallRun}", "InvalidData");
        Assert.Contains("record 3", error.Exception.Message);
        Assert.Contains("'Answer'", error.Exception.Message);
        Assert.False(Directory.Exists(run), "Bad data must be found before the run folder is written.");
    }

    [Fact]
    public void MixingASecondDatasetAddsItsShareOfExamples()
    {
        string run = Path.Combine(Temp, "run");
        RunClean(ModelWithAdapter + "; " + SixteenExamples);
        var output = RunClean($"{QuestionRecords} | Start-LoraFinetune -Model $ftModel -PromptProperty Question -ResponseProperty Answer -MixDataset $ftData -MixFraction 0.2 -OutputPath '{run}' {SmallRun} -Verbose 4>&1");
        // 16 primary examples and round(16 · 0.2 / 0.8) = 4 mixed in.
        Assert.Equal(20, RunData(run).GetProperty("train_examples").GetInt32());
        Assert.Contains(output, o => o.BaseObject is VerboseRecord v && v.Message.Contains("(4 mixed in)"));
    }

    [Fact]
    public void MaxSeqLengthTruncatesAndCountsAndAPromptFillingItIsAnError()
    {
        RunClean(ModelWithAdapter + "; " + SixteenExamples);
        var result = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{Path.Combine(Temp, "run")}' {SmallRun} -MaxSeqLength 12");
        Assert.Equal(16, result.TruncatedExamples);

        // With the prompt masked, 4 tokens hold only prompt: nothing is left to learn from.
        string run = Path.Combine(Temp, "run2");
        var error = Fails($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' {SmallRun} -MaxSeqLength 4 -MaskPrompt", "InvalidArgument");
        Assert.Contains("None of the 16 training examples", error.Exception.Message);
        Assert.Contains("MaxSeqLength", error.Exception.Message);
    }

    [Theory]
    [InlineData("empty.jsonl", "", "the file is empty")]
    [InlineData("blank.jsonl", "\n\n", "no records")]
    [InlineData("broken.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"c\", \"output\": }\n", "line 2")]
    [InlineData("empty.json", "", "the file is empty")]
    public void BadDataFilesAreInvalidDataErrorsThatSayWhere(string name, string content, string expected)
    {
        string file = Path.Combine(Temp, name);
        File.WriteAllText(file, content);
        RunClean(ModelWithAdapter);
        string run = Path.Combine(Temp, "run");
        var error = Fails($"Start-LoraFinetune -Model $ftModel -DataPath '{file}' -OutputPath '{run}' {SmallRun}", "InvalidData");
        Assert.Equal(ErrorCategory.InvalidData, error.CategoryInfo.Category);
        Assert.Contains(name, error.Exception.Message);
        Assert.Contains(expected, error.Exception.Message);
        Assert.False(Directory.Exists(run));
    }

    [Fact]
    public void ClassificationTrainsTheHeadAndReportsValidationAccuracy()
    {
        string run = Path.Combine(Temp, "run");
        RunClean("if ($ftModel -is [LoraPS.Models.LoraModel]) { Remove-LoraModel $ftModel }; $ftModel = Import-LoraModel -Head SequenceClassification -NumLabels 2; " +
            "New-LoraConfig -Rank 2 | Add-LoraAdapter -Model $ftModel -Seed 1 | Out-Null");
        var result = Train("1..16 | ForEach-Object { [pscustomobject]@{ sentence = ('a happy day', 'a sad day')[$_ % 2]; label = $_ % 2 } } | " +
            $"Start-LoraFinetune -Model $ftModel -OutputPath '{run}' {SmallRun} -ValidationFraction 0.25 -InitialValidation");
        Assert.InRange(result.FinalValidation!.Accuracy!.Value, 0, 1);
        Assert.NotNull(result.InitialValidation!.Accuracy);
        Assert.Equal("Classification", RunData(run).GetProperty("format").GetString());
        // The new score head trains and is saved with the adapter (PEFT's modules_to_save for SEQ_CLS).
        byte[] bytes = AdapterBytes(result);
        string header = System.Text.Encoding.UTF8.GetString(bytes, 8, (int)BitConverter.ToInt64(bytes, 0));
        Assert.Contains("score", header);
    }

    [Fact]
    public void ScheduleAndSgdMomentumReachTheOptimizer()
    {
        string run = Path.Combine(Temp, "run");
        RunClean(ModelWithAdapter + "; " + SixteenExamples);
        Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' {SmallRun} -Optimizer Sgd -Momentum 0.9 -Schedule Constant -GroupByLength");
        var options = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "run.json"))).RootElement.GetProperty("options");
        Assert.Equal(0.9, options.GetProperty("optimizer").GetProperty("momentum").GetDouble());
        Assert.Equal("Sgd", options.GetProperty("optimizer").GetProperty("kind").GetString());
        Assert.Equal("Constant", options.GetProperty("schedule").GetProperty("kind").GetString());
        Assert.Equal("LengthGrouped", options.GetProperty("batch_ordering").GetString());
        // Constant after one warmup step: every later step runs at the peak rate.
        var rates = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("lr").GetDouble()).ToList();
        Assert.Equal([0, 0.01, 0.01, 0.01, 0.01, 0.01], rates);

        var error = Fails($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{Path.Combine(Temp, "run2")}' {SmallRun} -Momentum 0.9", "InvalidArgument");
        Assert.Contains("-Optimizer Sgd", error.Exception.Message);
    }

    [Fact]
    public void ABf16ModelTrains()
    {
        RunClean("if ($ftModel -is [LoraPS.Models.LoraModel]) { Remove-LoraModel $ftModel }; $ftModel = Import-LoraModel -Precision BF16; " +
            "New-LoraConfig -Rank 2 | Add-LoraAdapter -Model $ftModel -Seed 1 | Out-Null; " + SixteenExamples);
        var result = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{Path.Combine(Temp, "run")}' {SmallRun.Replace("-MaxSteps 6", "-MaxSteps 2")}");
        Assert.Equal((StopReason.Completed, 2L), (result.StopReason, result.Steps));
        Assert.True(double.IsFinite(result.FinalTrainLoss!.Value));
        Assert.Equal("BF16", JsonDocument.Parse(File.ReadAllText(Path.Combine(Temp, "run", "run.json"))).RootElement.GetProperty("model").GetProperty("precision").GetString());
    }
}
