using System.Text.Json.Nodes;
using LoraPS.Adapters;
using LoraPS.Checkpoints;
using LoraPS.Models;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Adapters.PeftModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Adapters;

/// <summary>
/// LoRA on GPT-2's Conv1D layers (stored (in, out) in checkpoints): PEFT's fan_in_fan_out. A is (r, in) and B
/// (out, r) in the Conv1D's own in/out, the config says fan_in_fan_out = true, and a merged checkpoint stores
/// W + (s·B·A)ᵀ in the (in, out) layout with lm_head left tied.
/// </summary>
public class Gpt2LoraTests
{
    static readonly LoraConfig CAttn = new() { Rank = 4, Alpha = 8, Dropout = 0, TargetModules = ModuleSelection.Names("c_attn") };

    [Fact]
    public void ConvLayersGetLoraWithPeftShapesAndFanInFanOut()
    {
        using var loaded = LoadBase("tiny-gpt2");
        var set = new LoraAdapterSet(loaded.Model);
        var info = set.Add("default", CAttn, seed: 7);
        Assert.Equal(["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"], info.Targets.Select(t => t.Path));
        Assert.True(info.Config.FanInFanOut);
        Assert.Equal(PeftTaskType.CausalLM, info.Config.TaskType);
        var layer = set.LoraLayers["transformer.h.0.attn.c_attn"];
        Assert.True(layer.FanInFanOut);
        Assert.Equal([4L, 64L], layer.LoraA("default").shape);
        Assert.Equal([192L, 4L], layer.LoraB("default").shape);

        // PEFT's default target for gpt2 is c_attn too.
        using var other = LoadBase("tiny-gpt2");
        var defaults = new LoraAdapterSet(other.Model).Add("x", new LoraConfig { Dropout = 0, Rank = 2 }, seed: 1);
        Assert.Equal(["c_attn"], defaults.Config.TargetModules!.ModuleNames);
    }

    [Fact]
    public void SaveLoadMergeAndMergedCheckpointAgree()
    {
        using var folder = new TempFolder();
        using var loaded = LoadBase("tiny-gpt2");
        var set = new LoraAdapterSet(loaded.Model, "models/tiny-gpt2");
        set.Add("default", CAttn, seed: 7);
        RandomizeB(set, "default", 11);
        using var scope = NewDisposeScope();
        var r = Reference("tiny-gpt2");
        var baseLogits = r["logits"];
        var adapterLogits = Logits(loaded.Model, r);
        Assert.True((adapterLogits - baseLogits).abs().max().item<float>() > 1e-3, "the adapter should change the logits");

        // Save: PEFT keys in the Conv1D's in/out, and fan_in_fan_out = true in the config.
        set.Save(folder.Sub("adapter"));
        using (var file = SafetensorsFile.Open(folder.Sub("adapter", LoraAdapterSet.WeightsFileName)))
        {
            Assert.Equal([4L, 64L], file.GetEntry("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight").Shape);
            Assert.Equal([192L, 4L], file.GetEntry("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight").Shape);
            Assert.Equal(4, file.Entries.Count);
        }
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(folder.Sub("adapter", PeftAdapterConfig.FileName)))!;
        Assert.True(config["fan_in_fan_out"]!.GetValue<bool>());

        using (var second = LoadBase("tiny-gpt2"))
        {
            new LoraAdapterSet(second.Model).Load(folder.Sub("adapter"));
            TensorAssert.Equal(adapterLogits, Logits(second.Model, r), "reloaded adapter logits");
        }

        // In-memory merge: same logits; unmerge restores W.
        var layer = set.LoraLayers["transformer.h.0.attn.c_attn"];
        var w = layer.BaseLayer.weight!.detach().clone();
        var delta = layer.DeltaWeight("default").detach().clone();
        set.MergeInPlace();
        TensorAssert.Close(w + delta, layer.BaseLayer.weight!, 1e-6, "merged W = W + s·B·A");
        TensorAssert.Close(adapterLogits, Logits(loaded.Model, r), 1e-5, "merged logits");
        set.Unmerge();
        TensorAssert.Close(w, layer.BaseLayer.weight!, 1e-6, "unmerged W");

        // Merged checkpoint: the base file's keys, Conv1D weights (in, out) = W_file + (s·B·A)ᵀ, no lm_head (tied).
        var merged = set.MergeAndSave(folder.Sub("merged"));
        using (var written = SafetensorsFile.Open(Path.Combine(merged, "model.safetensors")))
        using (var original = SafetensorsFile.Open(AdapterTestFiles.Fixture("models", "tiny-gpt2", "model.safetensors")))
        {
            Assert.Equal(original.Entries.Select(e => e.Name).Order(StringComparer.Ordinal), written.Entries.Select(e => e.Name).Order(StringComparer.Ordinal));
            var key = "transformer.h.0.attn.c_attn.weight";
            Assert.Equal([64L, 192L], written.GetEntry(key).Shape);
            TensorAssert.Close(original.ReadTensor(key) + delta.t(), written.ReadTensor(key), 1e-6, key);
            TensorAssert.Equal(original.ReadTensor("transformer.h.0.attn.c_proj.weight"), written.ReadTensor("transformer.h.0.attn.c_proj.weight"));
        }
        Assert.True(File.Exists(Path.Combine(merged, "generation_config.json")));
        using var reloaded = ModelLoader.Load(merged, new ModelLoadOptions { Attention = AttentionImplementation.Eager });
        Assert.Equal(["transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight"],
            reloaded.Report.Transposed.Where(k => k.StartsWith("transformer.h.0.attn", StringComparison.Ordinal)).Order(StringComparer.Ordinal));
        TensorAssert.Close(adapterLogits, Logits(reloaded.Model, r), 1e-5, "reloaded merged logits");
    }
}
