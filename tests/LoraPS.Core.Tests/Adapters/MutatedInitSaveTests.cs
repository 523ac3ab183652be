using System.Text.Json.Nodes;
using LoraPS.Adapters;
using LoraPS.Training;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Adapters.PeftModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Adapters;

/// <summary>
/// Adapters whose init rewrote W (LoRA-GA, PiSSA, OLoRA) are saved converted for the ORIGINAL base (rank 2r,
/// [A ; A₀], [B | −B₀], α×2 or ×√2 under rsLoRA): loaded onto an untouched base they reproduce the trained model.
/// </summary>
public class MutatedInitSaveTests
{
    static LoraConfig Config(LoraInit init, bool rsLora) => new()
    {
        Rank = 4,
        Alpha = 8,
        UseRsLora = rsLora,
        Init = init,
        TargetModules = ModuleSelection.Names("q_proj", "v_proj", "down_proj"),
        RankPattern = new Dictionary<string, int> { ["down_proj"] = 2 },
    };

    /// <summary>Three SGD steps on the fixture batch, so A and B move away from their initial values.</summary>
    static void Train(LoraAdapterSet set, Dictionary<string, Tensor> reference)
    {
        var parameters = set.TrainableNamedParameters().Select(p => p.Parameter).ToList();
        for (int step = 0; step < 3; step++)
        {
            using var scope = NewDisposeScope();
            var output = set.Model.Forward(reference["input_ids"], reference["attention_mask"]);
            set.Model.ComputeLoss(output, reference["labels"]).backward();
            using var noGrad = no_grad();
            foreach (var p in parameters)
            {
                p.sub_(p.grad! * 0.5);
                p.grad!.zero_();
            }
        }
    }

    [Theory]
    [InlineData("lora_ga", false)]
    [InlineData("lora_ga", true)]
    [InlineData("pissa", false)]
    [InlineData("olora", true)]
    public void ConvertedAdapterOnTheOriginalBaseReproducesTheTrainedModel(string init, bool rsLora)
    {
        using var folder = new TempFolder();
        using var scope = NewDisposeScope();
        var reference = Reference("tiny-llama");
        Tensor trained;
        using (var loaded = LoadBase("tiny-llama"))
        {
            var set = new LoraAdapterSet(loaded.Model);
            var config = Config(LoraInit.Parse(init), rsLora);
            if (init == "lora_ga")
            {
                using var cache = new TempFolder();
                File.Copy(AdapterTestFiles.Fixture("lora_ga", "grads.safetensors"), cache.Sub("g.safetensors"));
                LoraGaInitializer.Initialize(set, "default", config, null, new LoraGaOptions { SvdIterations = null }, cache.Sub("g.safetensors"));
            }
            else
            {
                set.Add("default", config, seed: 1);
            }
            Train(set, reference);
            trained = Logits(loaded.Model, reference);
            set.Save(folder.Sub("converted"));
            set.Save(folder.Sub("raw"), unconverted: true);
        }

        var json = JsonNode.Parse(File.ReadAllText(folder.Sub("converted", PeftAdapterConfig.FileName)))!;
        Assert.Equal(8, json["r"]!.GetValue<int>());
        Assert.Equal(rsLora ? 8 * Math.Sqrt(2) : 16, json["lora_alpha"]!.GetValue<double>(), 1e-12);
        Assert.Equal(4, json["rank_pattern"]!["down_proj"]!.GetValue<int>());
        Assert.True(json["init_lora_weights"]!.GetValue<bool>());
        var raw = JsonNode.Parse(File.ReadAllText(folder.Sub("raw", PeftAdapterConfig.FileName)))!;
        Assert.Equal(4, raw["r"]!.GetValue<int>());
        Assert.Equal(init, raw["init_lora_weights"]!.GetValue<string>());

        using var original = LoadBase("tiny-llama");
        var untouched = Logits(original.Model, reference);
        Assert.True((untouched - trained).abs().max().item<float>() > 1e-3, "training should have changed the model");
        var fresh = new LoraAdapterSet(original.Model);
        fresh.Load(folder.Sub("converted"));
        TensorAssert.Close(trained, Logits(original.Model, reference), 1e-5, "converted adapter on the original base");
    }

    [Fact]
    public void AdaptersLoadedFromFilesAreSavedAsTheyAre()
    {
        using var folder = new TempFolder();
        using var loaded = LoadBase("tiny-llama");
        var set = new LoraAdapterSet(loaded.Model);
        set.Load(AdapterTestFiles.PeftAdapterDir("tiny-llama-lora"));
        Assert.False(set.SavesConverted("default"));
        using var other = LoadBase("tiny-llama");
        var plain = new LoraAdapterSet(other.Model);
        plain.Add("default", Config(LoraInit.Default, false));
        Assert.False(plain.SavesConverted("default"));
    }
}
