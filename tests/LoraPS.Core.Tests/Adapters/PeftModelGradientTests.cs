using LoraPS.Adapters;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Adapters.PeftModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Adapters;

/// <summary>
/// One backward pass through a whole adapted model against PEFT's first training step
/// (tests/fixtures/peft/*-train/train.safetensors <c>grad_step1.&lt;key&gt;</c>): the same parameters get gradients,
/// and the gradients agree within 1e-5. The DoRA case also checks that ‖W + s·B·A‖ is detached (a non-detached norm
/// moves these gradients by up to 0.037).
/// </summary>
public class PeftModelGradientTests
{
    [Theory]
    [InlineData("tiny-llama-lora")]
    [InlineData("tiny-llama-dora")]
    [InlineData("tiny-bert-lora")]
    public void FirstStepGradientsMatchPeft(string variant)
    {
        var model = ModelOf(variant);
        using var loaded = LoadBase(model);
        var set = new LoraAdapterSet(loaded.Model);
        set.Load(AdapterTestFiles.PeftAdapterDir(variant), trainable: true);

        using var scope = NewDisposeScope();
        var train = ReadAll(AdapterTestFiles.Fixture("peft", variant + "-train", "train.safetensors"));
        var r = Reference(model);
        var parameters = PeftParameters(set, "default");
        var gradKeys = train.Keys.Where(k => k.StartsWith("grad_step1.", StringComparison.Ordinal)).Select(k => k["grad_step1.".Length..]).ToList();
        Assert.Equal(gradKeys.Order(StringComparer.Ordinal), parameters.Keys.Order(StringComparer.Ordinal));
        // The trainable set is exactly PEFT's: nothing else gets a gradient.
        Assert.Equal(parameters.Count, set.TrainableNamedParameters().Count);
        foreach (var (key, p) in parameters) TensorAssert.Equal(train["step0." + key], p, "step0 " + key);

        var output = loaded.Model.Forward(r["input_ids"], r["attention_mask"]);
        var loss = loaded.Model.ComputeLoss(output, r["labels"]);
        Assert.Equal(train["losses_before_step"][0].item<float>(), loss.item<float>(), 1e-5);
        loss.backward();

        foreach (var (key, p) in parameters)
            TensorAssert.Close(train["grad_step1." + key], p.grad!, 1e-5, "grad " + key);
        Assert.All(loaded.Model.parameters().Where(p => !p.requires_grad), p => Assert.True(p.grad is null));
    }
}
