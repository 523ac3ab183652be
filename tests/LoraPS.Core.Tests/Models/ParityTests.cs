using LoraPS.Models;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Models.ModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Models;

/// <summary>
/// Logits, hidden states and losses against transformers 4.40.2 (eager attention, fp32) on the tiny fixtures
/// (tests/fixtures/README.md §3). Tolerances: 1e-4 for activations, 1e-5 for losses.
/// </summary>
public class ParityTests
{
    [Theory]
    [InlineData("tiny-llama", AttentionImplementation.Sdpa)]
    [InlineData("tiny-llama", AttentionImplementation.Eager)]
    [InlineData("tiny-qwen2", AttentionImplementation.Sdpa)]
    [InlineData("tiny-qwen2", AttentionImplementation.Eager)]
    [InlineData("tiny-gpt2", AttentionImplementation.Sdpa)]
    [InlineData("tiny-gpt2", AttentionImplementation.Eager)]
    public void CausalLmMatchesTransformers(string name, AttentionImplementation attention)
    {
        using var loaded = ModelLoader.Load(Fixture(name), new ModelLoadOptions { Attention = attention });
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var r = Reference(name);
        Assert.Equal(ModelHeadKind.CausalLM, loaded.HeadKind);

        var output = loaded.Model.Forward(r["input_ids"], r["attention_mask"], outputHiddenStates: true);
        AssertClose(r["logits"], output.Logits!, 1e-4, 1e-4, $"{name} logits");
        Assert.Equal(3, output.HiddenStates.Count);
        for (var i = 0; i < 3; i++)
            AssertClose(r[$"hidden_states.{i}"], output.HiddenStates[i], 1e-4, 1e-4, $"{name} hidden_states.{i}");
        Assert.Equal(r["loss"].item<float>(), loaded.Model.ComputeLoss(output, r["labels"]).item<float>(), 1e-5);

        // Right-padded batch: only positions the mask keeps are meaningful.
        var padded = loaded.Model.Forward(r["padded.input_ids"], r["padded.attention_mask"]);
        var valid = r["padded.attention_mask"].to(ScalarType.Bool);
        AssertClose(r["padded.logits"][valid], padded.Logits![valid], 1e-4, 1e-4, $"{name} padded logits");
        Assert.Equal(r["padded.loss"].item<float>(), loaded.Model.ComputeLoss(padded, r["padded.labels"]).item<float>(), 1e-5);
    }

    [Theory]
    [InlineData("tiny-bert", AttentionImplementation.Sdpa)]
    [InlineData("tiny-bert", AttentionImplementation.Eager)]
    [InlineData("tiny-roberta", AttentionImplementation.Sdpa)]
    [InlineData("tiny-roberta", AttentionImplementation.Eager)]
    public void EncoderClassifierMatchesTransformers(string name, AttentionImplementation attention)
    {
        using var loaded = ModelLoader.Load(Fixture(name), new ModelLoadOptions { Attention = attention });
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var r = Reference(name);
        Assert.Equal(ModelHeadKind.SequenceClassification, loaded.HeadKind);

        // Row 1 ends in 5 pad tokens masked out; token_type_ids default to zeros.
        var output = loaded.Model.Forward(r["input_ids"], r["attention_mask"], outputHiddenStates: true);
        AssertClose(r["logits"], output.Logits!, 1e-4, 1e-4, $"{name} logits");
        for (var i = 0; i < 3; i++) {
            // Padded positions are computed too (they just are not attended to), so they must match as well.
            AssertClose(r[$"hidden_states.{i}"], output.HiddenStates[i], 1e-4, 1e-4, $"{name} hidden_states.{i}");
        }
        Assert.Equal(r["loss"].item<float>(), loaded.Model.ComputeLoss(output, r["labels"]).item<float>(), 1e-5);
    }

    [Theory]
    [InlineData("tiny-llama", 139584)]
    [InlineData("tiny-qwen2", 107072)]
    [InlineData("tiny-gpt2", 136960)]
    [InlineData("tiny-bert", 108354)]
    [InlineData("tiny-roberta", 108418)]
    public void ParameterCountMatchesTransformers(string name, long transformersCount)
    {
        using var loaded = ModelLoader.Load(Fixture(name));
        Assert.Equal(transformersCount, loaded.ParameterCount);
        Assert.Equal(transformersCount * 4, loaded.ParameterBytes);
    }

    [Fact]
    public void Bf16ForwardStaysCloseToFp32()
    {
        using var fp32 = ModelLoader.Load(Fixture("tiny-llama"));
        using var bf16 = ModelLoader.Load(Fixture("tiny-llama"), new ModelLoadOptions { DType = ScalarType.BFloat16 });
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var r = Reference("tiny-llama");
        Assert.Equal(ScalarType.BFloat16, bf16.DType);
        Assert.All(bf16.Model.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        Assert.Equal(fp32.ParameterBytes / 2, bf16.ParameterBytes);

        var reference = fp32.Model.Forward(r["input_ids"]);
        var low = bf16.Model.Forward(r["input_ids"]);
        Assert.Equal(ScalarType.BFloat16, low.Logits!.dtype);
        // bf16 keeps ~3 significant digits; logits here are O(1–10).
        var diff = MaxAbsDiff(reference.Logits!, low.Logits);
        Assert.True(diff < 0.25, $"bf16 logits differ from fp32 by {diff}");
        var agree = reference.Logits!.argmax(-1).eq(low.Logits.argmax(-1)).to(ScalarType.Float32).mean().item<float>();
        Assert.True(agree > 0.9, $"bf16 and fp32 agree on the top token at only {agree:P0} of positions");
        var lossDiff = Math.Abs(fp32.Model.ComputeLoss(reference, r["labels"]).item<float>() - bf16.Model.ComputeLoss(low, r["labels"]).item<float>());
        Assert.True(lossDiff < 0.02, $"bf16 loss differs by {lossDiff}");
    }
}
