using LoraPS.Adapters;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace LoraPS.Tests.Adapters;

public class PeftStateDictKeysTests
{
    const string Q = "model.layers.0.self_attn.q_proj";

    [Theory]
    [InlineData("lora_A.default.weight", "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")]
    [InlineData("lora_B.default.weight", "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")]
    [InlineData("lora_B.other.bias", "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias")]
    [InlineData("lora_magnitude_vector.default.weight", "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector")]
    [InlineData("base_layer.bias", "base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias")]
    [InlineData("lora_embedding_A.default", "base_model.model.model.layers.0.self_attn.q_proj.lora_embedding_A")]
    public void MapsLayerKeysToPeftFileKeysAndBack(string layerKey, string peftKey)
    {
        Assert.Equal(peftKey, PeftStateDictKeys.ToPeft(Q, layerKey));
        if (layerKey.StartsWith("base_layer", StringComparison.Ordinal))
        {
            Assert.False(PeftStateDictKeys.TryFromPeft(peftKey, "default", out _, out _));
            return;
        }
        var adapter = layerKey.Split('.')[1];
        Assert.True(PeftStateDictKeys.TryFromPeft(peftKey, adapter, out var path, out var key));
        Assert.Equal((Q, layerKey), (path, key));
    }

    [Fact]
    public void ModulesToSaveKeysAreNotLoraParameters()
    {
        Assert.False(PeftStateDictKeys.TryFromPeft("base_model.model.classifier.weight", "default", out _, out _));
        Assert.False(PeftStateDictKeys.TryFromPeft("base_model.model.my_lora_Ax.weight", "default", out _, out _));
    }

    /// <summary>Every key of the four fixture adapter files parses to a module path and a layer key, and maps back.</summary>
    [Fact]
    public void ParsesEveryFixtureAdapterKey()
    {
        var lines = File.ReadAllLines(AdapterTestFiles.Fixture("peft", "ADAPTER_KEYS.txt"));
        int lora = 0;
        foreach (var line in lines.Where(l => l.StartsWith("base_model.", StringComparison.Ordinal)))
        {
            var key = line.Split(' ')[0];
            if (key is "base_model.model.classifier.weight" or "base_model.model.classifier.bias")
            {
                Assert.False(PeftStateDictKeys.TryFromPeft(key, "default", out _, out _));
                continue;
            }
            Assert.True(PeftStateDictKeys.TryFromPeft(key, "default", out var path, out var layerKey), key);
            Assert.Equal(key, PeftStateDictKeys.ToPeft(path, layerKey));
            lora++;
        }
        Assert.Equal(28 + 42 + 28 + 41 - 2 * 2, lora);
    }

    [Fact]
    public void LayerExposesAndLoadsItsPeftTensors()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(41);
        using var layer = new LoraLinear(Linear(new TorchSharp.Modules.Parameter(TensorAssert.Random(g, 5, 4)), null));
        layer.AddAdapter("default", new LoraLayerOptions { Rank = 2, Alpha = 2, UseDora = true }, g);
        var tensors = layer.PeftTensors(Q, "default");
        Assert.Equal(
            [$"base_model.model.{Q}.lora_A.weight", $"base_model.model.{Q}.lora_B.weight", $"base_model.model.{Q}.lora_magnitude_vector"],
            tensors.Keys.Order());

        var file = new Dictionary<string, Tensor>
        {
            [$"base_model.model.{Q}.lora_A.weight"] = TensorAssert.Random(g, 2, 4),
            [$"base_model.model.{Q}.lora_B.weight"] = TensorAssert.Random(g, 5, 2),
            [$"base_model.model.{Q}.lora_magnitude_vector"] = TensorAssert.Random(g, 5),
        };
        layer.LoadPeftTensors(Q, "default", file);
        foreach (var (key, value) in file) TensorAssert.Equal(value, tensors[key], key);

        file.Remove($"base_model.model.{Q}.lora_magnitude_vector");
        Assert.Contains("lora_magnitude_vector", Assert.Throws<KeyNotFoundException>(() => layer.LoadPeftTensors(Q, "default", file)).Message);
    }
}
