using System.Management.Automation;
using LoraPS.Training;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>Start-LoraFinetune -Quantize: QLoRA on a model object that was imported in full precision.</summary>
[Collection(ModuleCollection.Name)]
public sealed class FinetuneQuantizeTests(RunspaceFixture fixture) : FinetuneTestKit(fixture)
{
    const string Quick = "-MaxSteps 3 -BatchSize 4 -MicroBatchSize 4 -WarmupSteps 0 -LearningRate 0.01 -EvalInterval 0 -Seed 7";

    static IEnumerable<string> Verbose(IEnumerable<PSObject> output) => output.Select(o => o.BaseObject).OfType<VerboseRecord>().Select(v => v.Message);

    [Fact]
    public void QuantizeQuantizesTheGivenModelInPlaceAndTrainsOnIt()
    {
        string run = Path.Combine(Temp, "qlora");
        RunClean(SixteenExamples);
        RunClean(ModelWithAdapter);
        var output = RunClean(
            $"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' {Quick} -Quantize nf4-dq -Verbose 4>&1; " +
            "$ftModel.QuantizationFormat; $ftModel.BaseBitsPerParameter");
        var result = Assert.IsType<TrainingResult>(Assert.Single(output, o => o.BaseObject is TrainingResult).BaseObject);
        Assert.Equal((StopReason.Completed, 3L), (result.StopReason, result.Steps));
        Assert.True(result.FinalTrainLoss is { } loss && double.IsFinite(loss));
        Assert.True(File.Exists(Path.Combine(result.AdapterPath, "adapter_model.safetensors")));
        // The user's model object changed, and the message says so and points at the import path.
        Assert.Equal("nf4-dq", output[^2].BaseObject);
        Assert.InRange((double)output[^1].BaseObject, 4.1, 4.2);
        var message = Assert.Single(Verbose(output), m => m.StartsWith("Quantized the model's base weights", StringComparison.Ordinal));
        Assert.Contains("stays quantized", message);
        Assert.Contains("Import-LoraModel -Quantize", message);
        Assert.Contains("\"nf4-dq\"", File.ReadAllText(Path.Combine(run, "run.json")));

        // The same format again (a script re-run on the same object) is a no-op with a verbose note.
        output = RunClean($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{Path.Combine(Temp, "again")}' -MaxSteps 1 -BatchSize 4 -MicroBatchSize 4 -Quantize NF4-DQ -Verbose 4>&1");
        Assert.Contains(Verbose(output), m => m.Contains("already quantized as nf4-dq"));
        Assert.Equal(1L, Assert.IsType<TrainingResult>(Assert.Single(output, o => o.BaseObject is TrainingResult).BaseObject).Steps);

        // Another format is refused before anything is written.
        string other = Path.Combine(Temp, "other");
        var error = Fails($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{other}' -MaxSteps 1 -Quantize int8", "AlreadyQuantized");
        Assert.Equal(ErrorCategory.InvalidOperation, error.CategoryInfo.Category);
        Assert.Contains("already quantized (nf4-dq", error.Exception.Message);
        Assert.False(Directory.Exists(other));
        Assert.Equal("nf4-dq", RunClean("$ftModel.QuantizationFormat").Single().BaseObject);
    }

    [Fact]
    public void AnUnknownFormatIsRefusedAndTheModelIsLeftAlone()
    {
        RunClean(SixteenExamples);
        RunClean(ModelWithAdapter);
        var error = Fails($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{Path.Combine(Temp, "bad")}' -MaxSteps 1 -Quantize nf3", "UnknownQuantizationType");
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Contains("nf4, nf4-dq, fp4, fp4-dq, int8", error.Exception.Message);
        Assert.Equal("none", RunClean("$ftModel.QuantizationFormat").Single().BaseObject);
    }

    [Fact]
    public void WhatIfDoesNotQuantize()
    {
        string run = Path.Combine(Temp, "whatif");
        RunClean(SixteenExamples);
        RunClean(ModelWithAdapter);
        var output = RunClean($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' -MaxSteps 1 -Quantize nf4 -WhatIf; $ftModel.QuantizationFormat");
        Assert.Equal("none", Assert.Single(output).BaseObject);
        Assert.False(Directory.Exists(run));
    }

    [Fact]
    public void AResumeNeedsTheSameQuantizationAndQuantizeGivesIt()
    {
        string run = Path.Combine(Temp, "resume");
        RunClean(SixteenExamples);
        RunClean(ModelWithAdapter);
        // A 1 ms budget stops after the first step, with a checkpoint.
        var result = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' {Quick} -Quantize nf4 -MaxTime 00:00:00.001");
        Assert.Equal((StopReason.MaxTime, 1L), (result.StopReason, result.Steps));

        // A full-precision model does not match the run's base.
        RunClean(ModelWithoutAdapter);
        var error = Fails($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -Resume '{run}'", "InvalidOperation");
        Assert.Contains("quantized as nf4", error.Exception.Message);

        // The same model with -Quantize nf4 does.
        RunClean(ModelWithoutAdapter);
        result = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -Resume '{run}' -Quantize nf4");
        Assert.Equal(2L, result.Steps);
    }
}
