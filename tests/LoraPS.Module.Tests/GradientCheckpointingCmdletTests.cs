using System.Text.Json;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>Start-LoraFinetune -GradientCheckpointing through a real runspace.</summary>
[Collection(ModuleCollection.Name)]
public sealed class GradientCheckpointingCmdletTests(RunspaceFixture fixture) : FinetuneTestKit(fixture)
{
    static bool Recorded(string runFolder)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(runFolder, "run.json")));
        return json.RootElement.GetProperty("options").GetProperty("gradient_checkpointing").GetBoolean();
    }

    [Fact]
    public void TrainsTheSameAdapterAndRecordsTheSwitch()
    {
        string plain = Path.Combine(Temp, "plain"), checkpointed = Path.Combine(Temp, "checkpointed");
        RunClean(ModelWithAdapter + "; " + SixteenExamples);
        var a = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{plain}' {SmallRun}");
        RunClean(ModelWithAdapter);
        var b = Train($"Start-LoraFinetune -Model $ftModel -Dataset $ftData -OutputPath '{checkpointed}' {SmallRun} -GradientCheckpointing");
        Assert.Equal(a.FinalTrainLoss, b.FinalTrainLoss);
        Assert.Equal(AdapterBytes(a), AdapterBytes(b));
        Assert.False(Recorded(plain));
        Assert.True(Recorded(checkpointed));
        // The switch is for the run; the model is left as it was.
        Assert.Equal(false, Assert.Single(RunClean("$ftModel.Network.GradientCheckpointing")).BaseObject);
    }
}
