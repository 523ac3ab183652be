using LoraPS.Checkpoints;
using LoraPS.Models;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Models.ModelTestFiles;

namespace LoraPS.Tests.Models;

/// <summary>
/// ML.NET GenAI's approval idea: build each architecture from its config on the meta device (no weights) and compare
/// every state-dict key and shape with the checkpoint transformers saved.
/// </summary>
public class KeyApprovalTests
{
    [Theory]
    [InlineData("tiny-llama", 21)]
    [InlineData("tiny-qwen2", 26)]
    [InlineData("tiny-gpt2", 28)]
    [InlineData("tiny-bert", 41)]
    [InlineData("tiny-roberta", 41)]
    public void StateDictKeysAndShapesEqualTheCheckpoint(string name, int keyCount)
    {
        var config = ModelConfig.Load(Fixture(name));
        using var model = ModelFactory.Create(config, ModelFactory.DefaultHead(config), torch.META);
        using var file = SafetensorsFile.Open(Path.Combine(Fixture(name), "model.safetensors"));

        var tied = model.TiedParameters.Select(t => t.Tied).ToHashSet();
        var fanInFanOut = model.FanInFanOutModules;
        var ours = model.state_dict()
            .Where(kv => !tied.Contains(kv.Key))
            // Conv1D weights are stored (in, out); the model holds them as (out, in).
            .ToDictionary(kv => kv.Key, kv => fanInFanOut.Contains(kv.Key[..kv.Key.LastIndexOf('.')]) && kv.Key.EndsWith(".weight")
                ? Enumerable.Reverse(kv.Value.shape).ToArray() : kv.Value.shape);
        var theirs = file.Entries.ToDictionary(e => e.Name, e => e.Shape);

        Assert.Equal(keyCount, theirs.Count);
        Assert.Equal(theirs.Keys.Order(StringComparer.Ordinal), ours.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, shape) in theirs) Assert.True(shape.SequenceEqual(ours[key]), $"{key}: checkpoint [{string.Join(",", shape)}], model [{string.Join(",", ours[key])}]");
        Assert.All(model.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
    }

    [Fact]
    public void TiedModelsShareOneParameter()
    {
        foreach (var name in new[] { "tiny-qwen2", "tiny-gpt2" }) {
            var config = ModelConfig.Load(Fixture(name));
            using var model = ModelFactory.Create(config, ModelHeadKind.CausalLM, torch.META);
            var (tiedKey, source) = Assert.Single(model.TiedParameters);
            Assert.Equal("lm_head.weight", tiedKey);
            var sd = model.state_dict();
            Assert.Same(sd[source], sd[tiedKey]);
        }
        using var untied = ModelFactory.Create(ModelConfig.Load(Fixture("tiny-llama")), ModelHeadKind.CausalLM, torch.META);
        Assert.Empty(untied.TiedParameters);
    }

    [Fact]
    public void LinearLayersAreListedWithHfPathsAndSizes()
    {
        using var llama = ModelFactory.Create(ModelConfig.Load(Fixture("tiny-llama")), ModelHeadKind.CausalLM, torch.META);
        var linears = llama.LinearLayers().ToDictionary(l => l.Path);
        Assert.Equal(15, linears.Count);   // 7 per layer × 2 + lm_head
        Assert.Equal((64L, 64L), (linears["model.layers.0.self_attn.q_proj"].InFeatures, linears["model.layers.0.self_attn.q_proj"].OutFeatures));
        Assert.Equal((64L, 32L), (linears["model.layers.1.self_attn.k_proj"].InFeatures, linears["model.layers.1.self_attn.k_proj"].OutFeatures));
        Assert.Equal((128L, 64L), (linears["model.layers.1.mlp.down_proj"].InFeatures, linears["model.layers.1.mlp.down_proj"].OutFeatures));
        Assert.Equal(512L, linears["lm_head"].OutFeatures);
        Assert.All(linears.Values, l => Assert.False(l.FanInFanOut || l.HasBias));

        using var qwen = ModelFactory.Create(ModelConfig.Load(Fixture("tiny-qwen2")), ModelHeadKind.CausalLM, torch.META);
        var biased = qwen.LinearLayers().Where(l => l.HasBias).Select(l => l.Path[(l.Path.LastIndexOf('.') + 1)..]).Distinct().Order();
        Assert.Equal(new[] { "k_proj", "q_proj", "v_proj" }, biased);

        using var gpt2 = ModelFactory.Create(ModelConfig.Load(Fixture("tiny-gpt2")), ModelHeadKind.CausalLM, torch.META);
        var conv = gpt2.LinearLayers().Where(l => l.FanInFanOut).ToDictionary(l => l.Path);
        Assert.Equal(8, conv.Count);
        Assert.Equal((64L, 192L), (conv["transformer.h.0.attn.c_attn"].InFeatures, conv["transformer.h.0.attn.c_attn"].OutFeatures));
        Assert.Equal((256L, 64L), (conv["transformer.h.1.mlp.c_proj"].InFeatures, conv["transformer.h.1.mlp.c_proj"].OutFeatures));
        Assert.False(gpt2.LinearLayers().Single(l => l.Path == "lm_head").FanInFanOut);

        using var bert = ModelFactory.Create(ModelConfig.Load(Fixture("tiny-bert")), ModelHeadKind.SequenceClassification, torch.META);
        var bertPaths = bert.LinearLayers().Select(l => l.Path).ToHashSet();
        Assert.Contains("bert.encoder.layer.0.attention.self.query", bertPaths);
        Assert.Contains("bert.encoder.layer.1.attention.output.dense", bertPaths);
        Assert.Contains("bert.encoder.layer.1.intermediate.dense", bertPaths);
        Assert.Contains("bert.pooler.dense", bertPaths);
        Assert.Contains("classifier", bertPaths);
        Assert.Equal(2 * 6 + 2, bertPaths.Count);

        using var roberta = ModelFactory.Create(ModelConfig.Load(Fixture("tiny-roberta")), ModelHeadKind.SequenceClassification, torch.META);
        var robertaPaths = roberta.LinearLayers().Select(l => l.Path).ToHashSet();
        Assert.Contains("classifier.dense", robertaPaths);
        Assert.Contains("classifier.out_proj", robertaPaths);
        Assert.DoesNotContain(robertaPaths, p => p.Contains("pooler"));
    }

    [Fact]
    public void BaseAndClassificationHeadsUseHfNames()
    {
        var config = ModelConfig.Load(Fixture("tiny-llama"));
        using (var body = ModelFactory.Create(config, ModelHeadKind.Base, torch.META)) {
            var keys = body.state_dict().Keys.ToList();
            Assert.Contains("embed_tokens.weight", keys);
            Assert.Contains("layers.1.self_attn.o_proj.weight", keys);
            Assert.Contains("norm.weight", keys);
        }
        using (var classifier = ModelFactory.Create(config with { NumLabels = 3 }, ModelHeadKind.SequenceClassification, torch.META)) {
            var sd = classifier.state_dict();
            Assert.Equal(new long[] { 3, 64 }, sd["score.weight"].shape);
            Assert.DoesNotContain("score.bias", sd.Keys);
        }
        var gpt2 = ModelConfig.Load(Fixture("tiny-gpt2"));
        using (var body = ModelFactory.Create(gpt2, ModelHeadKind.Base, torch.META))
            Assert.Contains("h.0.attn.c_attn", body.FanInFanOutModules);
        Assert.Throws<NotSupportedException>(() => ModelFactory.Create(ModelConfig.Load(Fixture("tiny-bert")), ModelHeadKind.CausalLM, torch.META));
    }
}
