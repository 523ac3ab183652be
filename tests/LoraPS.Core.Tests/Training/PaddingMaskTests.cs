using LoraPS.Data;
using LoraPS.Models;
using LoraPS.Tests.Adapters;
using Xunit;
using static LoraPS.Tests.Training.TrainingTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Training;

/// <summary>
/// The trainer drops the attention mask of right-padded causal-LM batches (attention then uses the kernel's causal
/// mask). That is only sound while padding never changes the loss or a gradient; this pins it down.
/// </summary>
[Collection(TrainingCollection.Name)]
public class PaddingMaskTests
{
    [Fact]
    public void ARightPaddedCausalLmBatchHasTheSameLossAndGradientsWithoutItsMask()
    {
        using var model = Stories(dropout: 0);
        var data = Arithmetic(model, count: 8, validationFraction: 0);
        // Give B values so the adapter's gradients are not trivially A-free.
        using (no_grad())
            foreach (var (name, p) in model.Adapters.TrainableNamedParameters())
                if (name.Contains("lora_B")) p.normal_(0, 0.05, new Generator(3));
        var examples = Enumerable.Range(0, data.Train.Count).Select(i => data.Train[i]).OrderBy(e => e.Length).ToList();
        using var batch = BatchCollator.Collate([examples[0], examples[^1]]);
        Assert.True(batch.Padding.PaddedTokens > 0, "the batch must hold padding for the test to mean anything");

        var network = model.Network;
        network.train();
        var parameters = model.Adapters.TrainableNamedParameters().Select(p => p.Parameter).ToList();
        (float Loss, List<Tensor> Grads) Run(Tensor? mask)
        {
            foreach (var p in parameters) p.grad?.zero_();
            var loss = network.ComputeLoss(network.Forward(batch.InputIds, mask), batch.Labels);
            loss.backward();
            return (loss.item<float>(), parameters.Select(p => p.grad!.clone()).ToList());
        }
        var masked = Run(batch.AttentionMask);
        var unmasked = Run(null);

        Assert.Equal(masked.Loss, unmasked.Loss, 5);
        for (int i = 0; i < parameters.Count; i++) TensorAssert.Close(masked.Grads[i], unmasked.Grads[i], 1e-5, $"gradient {i}");
        Assert.Contains(masked.Grads, g => g.abs().max().item<float>() > 1e-4f);
    }
}
