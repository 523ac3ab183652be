using LoraPS.Models;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Models.ModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Models;

/// <summary>Invariants of the building blocks that the fixtures do not reach: RoPE scaling, windows, dropout, bf16 norms.</summary>
public class LayerTests
{
    [Fact]
    public void Llama3RopeScalingMatchesTheFormula()
    {
        const double theta = 500000, factor = 8, low = 1, high = 4, original = 8192;
        var rope = new RotaryEmbedding(128, theta, new RopeScaling("llama3", factor, low, high, (int)original));
        var plain = new RotaryEmbedding(128, theta, null);
        int slowed = 0, kept = 0, blended = 0;
        for (var j = 0; j < 64; j++) {
            var f = 1.0 / Math.Pow(theta, 2.0 * j / 128);
            var wavelen = 2 * Math.PI / f;
            double expected;
            if (wavelen < original / high) { expected = f; kept++; }
            else if (wavelen > original / low) { expected = f / factor; slowed++; }
            else {
                var s = (original / wavelen - low) / (high - low);
                expected = (1 - s) * f / factor + s * f;
                blended++;
            }
            Assert.Equal(expected, rope.InverseFrequencies[j], expected * 2e-6);
            Assert.Equal(f, plain.InverseFrequencies[j], f * 2e-6);
        }
        // All three bands occur for Llama-3.1's settings.
        Assert.True(slowed > 0 && kept > 0 && blended > 0, $"{slowed} slowed, {kept} kept, {blended} blended");

        var linear = new RotaryEmbedding(16, 10000, new RopeScaling("linear", 4));
        var unscaled = new RotaryEmbedding(16, 10000, null);
        for (var j = 0; j < 8; j++) Assert.Equal(unscaled.InverseFrequencies[j] / 4, linear.InverseFrequencies[j], 1e-9);
    }

    [Fact]
    public void RopeRotatesHalfSplitPairs()
    {
        using var scope = NewDisposeScope();
        const int d = 8;
        var rope = new RotaryEmbedding(d, 10000, null);
        var (cos, sin) = rope.CosSin(torch.tensor(new long[,] { { 0, 3 } }), ScalarType.Float32);
        // x = e_j: the rotation pairs dimension j with j + d/2 (HF "rotate_half"), not with j + 1.
        for (var j = 0; j < d / 2; j++) {
            var x = torch.zeros(1, 1, 2, d);
            x[0, 0, 0, j] = 1;
            x[0, 0, 1, j] = 1;
            var y = RotaryEmbedding.Apply(x, cos, sin);
            AssertClose(x[0, 0, 0], y[0, 0, 0], 1e-7, 0, "position 0 is the identity");
            var angle = 3 * rope.InverseFrequencies[j];
            Assert.Equal(Math.Cos(angle), y[0, 0, 1, j].item<float>(), 1e-5);
            Assert.Equal(Math.Sin(angle), y[0, 0, 1, j + d / 2].item<float>(), 1e-5);
            Assert.Equal(2, (y[0, 0, 1].abs() > 1e-6).sum().item<long>());
        }
    }

    private static ModelConfig TinyMistral(int layers, int window) => ModelConfig.Parse(
        "{\"model_type\": \"mistral\", \"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 64, " +
        $"\"num_hidden_layers\": {layers}, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"sliding_window\": {window}}}");

    [Fact]
    public void MistralSlidingWindowHidesOlderTokens()
    {
        torch.manual_seed(7);
        using var model = ModelFactory.Create(TinyMistral(1, 4), ModelHeadKind.CausalLM);
        model.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = torch.randint(0, 50, new long[] { 1, 10 });
        var changed = ids.clone();
        changed[0, 0] = (ids[0, 0] + 1) % 50;
        var a = model.Forward(ids).Logits!;
        var b = model.Forward(changed).Logits!;
        // One layer, window 4: position t sees t−3 … t, so changing token 0 moves positions 0–3 only.
        Assert.True(MaxAbsDiff(a.narrow(1, 0, 4), b.narrow(1, 0, 4)) > 1e-4);
        AssertClose(a.narrow(1, 4, 6), b.narrow(1, 4, 6), 1e-6, 0, "outside the window");

        using var cache = model.CreateKvCache();
        var parts = new List<Tensor> { model.Forward(ids.narrow(1, 0, 3), cache: cache).Logits! };
        for (var t = 3; t < 10; t++) parts.Add(model.Forward(ids.narrow(1, t, 1), cache: cache).Logits!);
        AssertClose(a, torch.cat(parts, 1), 1e-5, 1e-5, "cached decoding with a window");
    }

    [Fact]
    public void DropoutActsOnlyInTrainingMode()
    {
        var config = ModelConfig.Load(Fixture("tiny-bert")) with { HiddenDropout = 0.3, AttentionDropout = 0.3, EmbeddingDropout = 0.3, ClassifierDropout = 0.3 };
        torch.manual_seed(1);
        using var model = ModelFactory.Create(config, ModelHeadKind.SequenceClassification);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = torch.randint(2, 500, new long[] { 2, 8 });
        model.train();
        Assert.True(MaxAbsDiff(model.Forward(ids).Logits!, model.Forward(ids).Logits!) > 1e-4);
        model.eval();
        AssertClose(model.Forward(ids).Logits!, model.Forward(ids).Logits!, 0, 0, "eval is deterministic");
    }

    [Fact]
    public void RmsNormNormalisesInFp32AndScalesAfterCastingBack()
    {
        using var scope = NewDisposeScope();
        using var norm = new RmsNorm(4, 1e-6, dtype: ScalarType.BFloat16);
        using (no_grad()) norm.weight.copy_(torch.tensor(new[] { 1f, 2f, 0.5f, 3f }));
        var x = torch.tensor(new[] { 300.5f, -2.25f, 7.1f, 0.01f }).to(ScalarType.BFloat16).unsqueeze(0);
        var y = norm.call(x);
        Assert.Equal(ScalarType.BFloat16, y.dtype);
        var x32 = x.to(ScalarType.Float32);
        var expected = norm.weight * (x32 * torch.rsqrt(x32.pow(2).mean(new long[] { -1 }, keepdim: true) + 1e-6)).to(ScalarType.BFloat16);
        Assert.True(expected.equal(y).all().item<bool>());
    }

    [Fact]
    public void BackwardReachesEveryParameter()
    {
        using var loaded = ModelLoader.Load(Fixture("tiny-qwen2"), new ModelLoadOptions { RequiresGrad = true });
        using var scope = NewDisposeScope();
        var r = Reference("tiny-qwen2");
        var output = loaded.Model.Forward(r["input_ids"]);
        loaded.Model.ComputeLoss(output, r["labels"]).backward();
        foreach (var (name, p) in loaded.Model.named_parameters())
            Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"{name} got no gradient");
    }
}
