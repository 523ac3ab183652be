using System.Management.Automation;
using LoraPS.Training;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>Start-LoraFinetune's guarantees about runs: determinism, -Resume, Ctrl+C (StopProcessing) and -Force.</summary>
[Collection(ModuleCollection.Name)]
public sealed class FinetuneResumeTests(RunspaceFixture fixture) : FinetuneTestKit(fixture)
{
    string Uninterrupted(string name)
    {
        RunClean(ModelWithAdapter + "; " + SixteenExamples);
        var result = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{Path.Combine(Temp, name)}' {SmallRun}");
        Assert.Equal((StopReason.Completed, 6L), (result.StopReason, result.Steps));
        return result.AdapterPath;
    }

    [Fact]
    public void TheSameSeedGivesTheSameAdapterAndAnotherSeedAnother()
    {
        RunClean(ModelWithAdapter + "; " + SixteenExamples);
        var first = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{Path.Combine(Temp, "a")}' {SmallRun}");
        RunClean(ModelWithAdapter);
        var second = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{Path.Combine(Temp, "b")}' {SmallRun}");
        RunClean(ModelWithAdapter);
        var other = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{Path.Combine(Temp, "c")}' {SmallRun.Replace("-Seed 7", "-Seed 8")}");

        Assert.Equal(AdapterBytes(first), AdapterBytes(second));
        Assert.Equal(first.FinalTrainLoss, second.FinalTrainLoss);
        Assert.NotEqual(AdapterBytes(first), AdapterBytes(other));
    }

    [Fact]
    public void ARunStoppedByMaxTimeAndResumedEndsWithTheUninterruptedAdapter()
    {
        var reference = File.ReadAllBytes(Path.Combine(Uninterrupted("reference"), "adapter_model.safetensors"));

        string run = Path.Combine(Temp, "interrupted");
        RunClean(ModelWithAdapter);
        // A 1 ms budget stops every session after its first step, with a checkpoint; run.json keeps the budget, so each
        // -Resume does one more step.
        var result = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' {SmallRun} -MaxTime 00:00:00.001");
        Assert.Equal((StopReason.MaxTime, 1L), (result.StopReason, result.Steps));
        Assert.NotNull(result.LastCheckpoint);
        for (long step = 2; step <= 6; step++)
        {
            RunClean(ModelWithoutAdapter);
            result = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -Resume '{run}'");
            Assert.Equal(step, result.Steps);
            Assert.Equal(step == 6 ? StopReason.Completed : StopReason.MaxTime, result.StopReason);
        }

        Assert.Equal(reference, AdapterBytes(result));
        Assert.Equal(6, File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Length);
        // A finished run cannot be resumed again; the message points at its adapter.
        RunClean(ModelWithoutAdapter);
        var error = Fails($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -Resume '{run}'", "InvalidOperation");
        Assert.Contains("already did all 6 steps", error.Exception.Message);
    }

    [Fact]
    public void StopProcessingSavesACheckpointThatResumesToTheUninterruptedAdapter()
    {
        const string longRun = "-MaxSteps 60 -BatchSize 2 -MicroBatchSize 2 -WarmupSteps 1 -LearningRate 0.01 -EvalInterval 0 -SaveInterval 0 -Seed 7";
        RunClean(ModelWithAdapter + "; " + SixteenExamples);
        var reference = AdapterBytes(Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{Path.Combine(Temp, "reference")}' {longRun}"));

        string run = Path.Combine(Temp, "stopped");
        RunClean(ModelWithAdapter);
        using (var ps = PowerShell.Create(Fixture.Runspace))
        {
            ps.AddScript($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' {longRun}");
            // Progress comes after every step (throttled); the first one asks to stop, as Ctrl+C would, and waits until
            // the pipeline is stopping so that the step loop sees the cancelled token.
            ProgressRecord? first = null;
            ps.Streams.Progress.DataAdded += (_, _) =>
            {
                if (ps.InvocationStateInfo.State != PSInvocationState.Running) return;
                first = ps.Streams.Progress[0];
                ps.BeginStop(null, null);
                SpinWait.SpinUntil(() => ps.InvocationStateInfo.State != PSInvocationState.Running, TimeSpan.FromSeconds(10));
            };
            var output = new PSDataCollection<PSObject>();
            var pending = ps.BeginInvoke<PSObject, PSObject>(null, output);
            Assert.True(pending.AsyncWaitHandle.WaitOne(TimeSpan.FromMinutes(3)), "Start-LoraFinetune did not stop.");
            Assert.Equal(PSInvocationState.Stopped, ps.InvocationStateInfo.State);
            Assert.Empty(output);   // a stopped pipeline takes no output: the partial result is the run folder
            // The bar shows the step, the loss, the speed and the time left.
            Assert.NotNull(first);
            Assert.Matches(@"^Step 1/60, loss \d+\.\d{4}, [\d,]+ tokens/s$", first.StatusDescription);
            Assert.True(first.SecondsRemaining >= 0, $"no ETA: {first.SecondsRemaining}");
        }

        // Stopped after the current step: a complete checkpoint, and metrics up to it.
        string latest = File.ReadAllText(Path.Combine(run, "checkpoints", "latest")).Trim();
        Assert.True(File.Exists(Path.Combine(run, "checkpoints", latest, "trainer_state.json")), latest);
        int done = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Length;
        Assert.InRange(done, 1, 59);
        Assert.False(Directory.Exists(Path.Combine(run, "final")), "A stopped run has no final adapter yet.");

        RunClean(ModelWithoutAdapter);
        var resumed = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -Resume '{run}'");
        Assert.Equal((StopReason.Completed, 60L), (resumed.StopReason, resumed.Steps));
        Assert.Equal(reference, AdapterBytes(resumed));
    }

    [Fact]
    public void ADivergingRunStopsWithTrainingDivergedAndKeepsItsCheckpoint()
    {
        string run = Path.Combine(Temp, "run");
        RunClean(ModelWithAdapter + "; " + SixteenExamples);
        // A checkpoint after every step; an absurd rate makes the weights overflow within a few steps.
        var error = Fails($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' -MaxSteps 20 -BatchSize 4 -MicroBatchSize 2 " +
            "-WarmupSteps 0 -Schedule Constant -LearningRate 1e30 -EvalInterval 0 -SaveInterval 1", "TrainingDiverged");
        Assert.Equal(ErrorCategory.InvalidResult, error.CategoryInfo.Category);
        var diverged = Assert.IsType<TrainingDivergedException>(error.Exception);
        Assert.Contains("Lower the learning rate", diverged.Message);
        Assert.NotNull(diverged.LastCheckpoint);
        Assert.True(File.Exists(Path.Combine(diverged.LastCheckpoint, "trainer_state.json")));
        Assert.Equal(diverged.Step - 1, File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Length);
    }

    [Fact]
    public void ForceReplacesWhatTheOutputFolderHolds()
    {
        string run = Path.Combine(Temp, "run");
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, "old.txt"), "an earlier run");
        RunClean(ModelWithAdapter + "; " + SixteenExamples);

        var error = Fails($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' {SmallRun}", "FolderNotEmpty");
        Assert.Equal(ErrorCategory.ResourceExists, error.CategoryInfo.Category);
        Assert.Contains("-Force", error.Exception.Message);
        Assert.True(File.Exists(Path.Combine(run, "old.txt")), "Refusing must not touch the folder.");

        var result = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' {SmallRun} -Force");
        Assert.Equal(StopReason.Completed, result.StopReason);
        Assert.False(File.Exists(Path.Combine(run, "old.txt")));
        Assert.True(File.Exists(Path.Combine(run, "run.json")));
    }
}
