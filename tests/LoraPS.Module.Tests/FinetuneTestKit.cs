using System.Management.Automation;
using LoraPS.Training;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>What the Start-LoraFinetune tests share: a temp folder, a small dataset in script, clean runs and adapter bytes.</summary>
public abstract class FinetuneTestKit(RunspaceFixture fixture) : IDisposable
{
    protected RunspaceFixture Fixture { get; } = fixture;

    protected string Temp { get; } = Directory.CreateTempSubdirectory("loraps-finetune-").FullName;

    /// <summary>16 short instruction examples as $ftData.</summary>
    protected const string SixteenExamples =
        "$ftData = 1..16 | ForEach-Object { [pscustomobject]@{ instruction = \"Tell a story number $_.\"; input = ''; output = \"Once upon a time there was a cat $_.\" } } | Import-LoraDataset";

    /// <summary>A fresh stories260K as $ftModel with a rank-2 adapter initialised with seed 1.</summary>
    protected const string ModelWithAdapter =
        "if ($ftModel -is [LoraPS.Models.LoraModel]) { Remove-LoraModel $ftModel }; $ftModel = Import-LoraModel; New-LoraConfig -Rank 2 | Add-LoraAdapter -Model $ftModel -Seed 1 | Out-Null";

    /// <summary>A fresh stories260K as $ftModel without an adapter, for -Resume (which loads the adapter from the checkpoint).</summary>
    protected const string ModelWithoutAdapter =
        "if ($ftModel -is [LoraPS.Models.LoraModel]) { Remove-LoraModel $ftModel }; $ftModel = Import-LoraModel";

    /// <summary>Six quick steps of two micro-batches of two examples.</summary>
    protected const string SmallRun = "-MaxSteps 6 -BatchSize 4 -MicroBatchSize 2 -WarmupSteps 1 -LearningRate 0.01 -EvalInterval 0 -Seed 7";

    public virtual void Dispose()
    {
        Fixture.Invoke("if ($ftModel -is [LoraPS.Models.LoraModel]) { Remove-LoraModel $ftModel }; $ftModel = $null; $ftData = $null");
        Directory.Delete(Temp, recursive: true);
    }

    protected IReadOnlyList<PSObject> RunClean(string script)
    {
        var (output, errors) = Fixture.Invoke(script);
        Assert.True(errors.Count == 0, string.Join("\n", errors.Select(e => $"{e.FullyQualifiedErrorId}: {e.Exception.Message}")));
        return output;
    }

    protected TrainingResult Train(string script) => Assert.IsType<TrainingResult>(RunClean(script).Single().BaseObject);

    /// <summary>The error a script writes, which must be exactly one, with the given ErrorId.</summary>
    protected ErrorRecord Fails(string script, string errorId)
    {
        var (_, errors) = Fixture.Invoke(script);
        var error = Assert.Single(errors);
        Assert.StartsWith(errorId + ",", error.FullyQualifiedErrorId);
        return error;
    }

    /// <summary>The bytes of the adapter's tensors file: equal bytes mean bit-identical tensors.</summary>
    protected static byte[] AdapterBytes(TrainingResult result) =>
        File.ReadAllBytes(Path.Combine(result.AdapterPath, "adapter_model.safetensors"));
}
