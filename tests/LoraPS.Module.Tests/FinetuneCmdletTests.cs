using System.Management.Automation;
using LoraPS.Data;
using LoraPS.Training;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>Import-LoraDataset and Start-LoraFinetune through a real runspace, on the bundled stories260K.</summary>
[Collection(ModuleCollection.Name)]
public sealed class FinetuneCmdletTests(RunspaceFixture fixture) : IDisposable
{
    readonly string _temp = Directory.CreateTempSubdirectory("loraps-finetune-cmdlets-").FullName;

    static string Alpaca => Path.Combine(ModuleAssemblies.RepoRoot, "data", "alpaca", "alpaca_5000_subset.json");

    /// <summary>16 short instruction examples built in script.</summary>
    const string SixteenExamples =
        "$ftData = 1..16 | ForEach-Object { [pscustomobject]@{ instruction = \"Tell a story number $_.\"; input = ''; output = \"Once upon a time there was a cat $_.\" } } | Import-LoraDataset";

    public void Dispose()
    {
        fixture.Invoke("if ($ftModel -is [LoraPS.Models.LoraModel]) { Remove-LoraModel $ftModel }; $ftModel = $null; $ftData = $null");
        Directory.Delete(_temp, recursive: true);
    }

    IReadOnlyList<PSObject> RunClean(string script)
    {
        var (output, errors) = fixture.Invoke(script);
        Assert.True(errors.Count == 0, string.Join("\n", errors.Select(e => $"{e.FullyQualifiedErrorId}: {e.Exception.Message}")));
        return output;
    }

    [Fact]
    public void ImportsTheAlpacaSubset()
    {
        var dataset = Assert.IsType<Dataset>(RunClean($"Import-LoraDataset -LiteralPath '{Alpaca}'").Single().BaseObject);
        Assert.Equal(5000, dataset.Count);
        Assert.Equal(DatasetFormat.Instruction, dataset.Format);
        Assert.Equal(("instruction", "input", "output"), (dataset.Mapping.PromptProperty, dataset.Mapping.InputProperty, dataset.Mapping.ResponseProperty));
    }

    [Fact]
    public void ImportsPipelineObjectsAsOneDataset()
    {
        var dataset = Assert.IsType<Dataset>(RunClean(
            "@([pscustomobject]@{ instruction = 'Add'; input = '2 3'; output = '5' }, [pscustomobject]@{ instruction = 'Say hi'; input = ''; output = 'hi' }) | Import-LoraDataset").Single().BaseObject);
        Assert.Equal(2, dataset.Count);
        var first = Assert.IsType<InstructionExample>(dataset.Examples[0]);
        Assert.Equal(("Add", "2 3", "5"), (first.Instruction, first.Input, first.Output));
    }

    [Fact]
    public void ABadRecordIsAnInvalidDataErrorNamingTheRecord()
    {
        string file = Path.Combine(_temp, "bad.jsonl");
        File.WriteAllLines(file, ["{\"instruction\": \"a\", \"output\": \"b\"}", "{\"instruction\": \"c\", \"output\": \"d\"}", "{\"instruction\": \"e\"}"]);
        var (_, errors) = fixture.Invoke($"Import-LoraDataset -LiteralPath '{file}'");
        var error = Assert.Single(errors);
        Assert.StartsWith("InvalidData,", error.FullyQualifiedErrorId);
        Assert.Contains("record 3", error.Exception.Message);
        Assert.Contains("'output'", error.Exception.Message);
    }

    [Fact]
    public void FinetunesFourStepsIntoARunFolder()
    {
        string run = Path.Combine(_temp, "run");
        RunClean("$ftModel = Import-LoraModel; New-LoraConfig -Rank 2 | Add-LoraAdapter -Model $ftModel -Seed 1 | Out-Null; " + SixteenExamples);
        var result = Assert.IsType<TrainingResult>(RunClean(
            $"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' -MaxSteps 4 -MicroBatchSize 2 -BatchSize 4 -WarmupSteps 1 -EvalInterval 0").Single().BaseObject);
        Assert.Equal((StopReason.Completed, 4L, 4L), (result.StopReason, result.Steps, result.MaxSteps));
        Assert.True(result.FinalTrainLoss is > 0 and < 100);
        Assert.True(File.Exists(Path.Combine(run, "run.json")));
        Assert.Equal(4, File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Count(l => l.Contains("\"step\"")));
        Assert.True(File.Exists(Path.Combine(result.AdapterPath, "adapter_config.json")), result.AdapterPath);
        Assert.StartsWith(Path.Combine(run, "final"), result.AdapterPath);

        // The folder now holds a run: a second start there is refused without -Force.
        var (_, errors) = fixture.Invoke($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' -MaxSteps 1");
        Assert.StartsWith("FolderNotEmpty,", Assert.Single(errors).FullyQualifiedErrorId);
    }

    [Fact]
    public void AModelWithoutAnAdapterIsRefusedWithWhatToDo()
    {
        string run = Path.Combine(_temp, "run");
        RunClean("$ftModel = Import-LoraModel; " + SixteenExamples);
        var (_, errors) = fixture.Invoke($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' -MaxSteps 1");
        var error = Assert.Single(errors);
        Assert.StartsWith("InvalidOperation,", error.FullyQualifiedErrorId);
        Assert.Contains("New-LoraConfig | Add-LoraAdapter", error.Exception.Message);
        Assert.False(Directory.Exists(run));
    }

    [Fact]
    public void WhatIfWritesNothing()
    {
        string run = Path.Combine(_temp, "run");
        RunClean("$ftModel = Import-LoraModel; New-LoraConfig -Rank 2 | Add-LoraAdapter -Model $ftModel | Out-Null; " + SixteenExamples);
        Assert.Empty(RunClean($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{run}' -MaxSteps 2 -WhatIf"));
        Assert.False(Directory.Exists(run));
    }
}
