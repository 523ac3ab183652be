using LoraPS.Adapters;
using LoraPS.Models;
using LoraPS.Quantization;
using LoraPS.Runtime;
using LoraPS.Tests.Adapters;
using LoraPS.Tests.Models;
using LoraPS.Training;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Training.TrainingTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Training;

/// <summary>
/// Activation checkpointing (<see cref="TransformerModel.GradientCheckpointing"/>): the loss and every LoRA gradient are
/// bit-identical to a plain backward (dropout masks replayed, DoRA, a quantized base, GPT-2 and BERT too), the trainer
/// produces the same adapter, the memory held between forward and backward shrinks, and no tensor leaks.
/// </summary>
[Collection(TrainingCollection.Name)]
public class GradientCheckpointingTests
{
    static LoraModel Stories260K(double dropout, bool dora = false, string? quantization = null)
    {
        var model = LoraModel.Load(ModelTestFiles.Stories260K, quantization: quantization is null ? null : QuantizationOptions.Parse(quantization));
        model.Adapters.Add("default", new LoraConfig { Rank = 4, Alpha = 8, Dropout = dropout, UseDora = dora, TargetModules = ModuleSelection.AllLinear }, seed: 7);
        // lora_B starts at zero, which would leave every lora_A gradient zero and hide a wrong recomputation.
        PeftModelTestFiles.RandomizeB(model.Adapters, "default", seed: 3);
        return model;
    }

    /// <summary>The loss and a copy of every trainable gradient after one forward/backward with the dropout seed 11.</summary>
    static (float Loss, Dictionary<string, Tensor> Grads) Backward(TransformerModel network, IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> parameters,
        bool checkpointing, Tensor inputIds, Tensor labels, Tensor? attentionMask = null)
    {
        network.train();
        network.GradientCheckpointing = checkpointing;
        foreach (var (_, p) in parameters) p.grad?.zero_();
        float loss;
        using (var scope = NewDisposeScope())
        {
            manual_seed(11);
            var output = network.Forward(inputIds, attentionMask);
            var value = network.ComputeLoss(output, labels);
            loss = value.item<float>();
            value.backward();
        }
        var grads = parameters.ToDictionary(p => p.Name, p =>
        {
            Assert.True(p.Parameter.grad is not null, p.Name + " got no gradient");
            return p.Parameter.grad!.clone();
        });
        network.GradientCheckpointing = false;
        return (loss, grads);
    }

    static void AssertSameGradients(TransformerModel network, IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> parameters,
        Tensor inputIds, Tensor labels, Tensor? attentionMask, string firstBlock)
    {
        var plain = Backward(network, parameters, false, inputIds, labels, attentionMask);
        var checkpointed = Backward(network, parameters, true, inputIds, labels, attentionMask);
        Assert.Equal(plain.Loss, checkpointed.Loss);
        Assert.Equal(plain.Grads.Keys, checkpointed.Grads.Keys);
        foreach (var (name, grad) in plain.Grads) TensorAssert.Equal(grad, checkpointed.Grads[name], name);
        // The first block's input is the frozen embedding's output: its LoRA factors still get (non-zero) gradients.
        var first = plain.Grads.Where(g => g.Key.Contains(firstBlock, StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(first);
        Assert.All(first, g => Assert.True(checkpointed.Grads[g.Key].abs().max().item<float>() > 0, g.Key + " is zero"));
    }

    [Theory]
    [InlineData(0.0, false, null)]
    [InlineData(0.1, false, null)]
    [InlineData(0.1, true, null)]
    [InlineData(0.1, false, "nf4-dq")]
    public void GradientsAreBitIdenticalOnStories260K(double dropout, bool dora, string? quantization)
    {
        using var model = Stories260K(dropout, dora, quantization);
        using var scope = NewDisposeScope();
        var ids = randint(3, model.VocabSize, [2, 48], generator: new Generator(5), dtype: ScalarType.Int64);
        var parameters = model.Adapters.TrainableNamedParameters();
        Assert.Contains(parameters, p => p.Name.Contains("lora_A", StringComparison.Ordinal));
        if (dora) Assert.Contains(parameters, p => p.Name.Contains("lora_magnitude_vector", StringComparison.Ordinal));
        AssertSameGradients(model.Network, parameters, ids, ids, null, "layers.0.");
    }

    [Fact]
    public void TheRandomStreamContinuesAsAfterAPlainBackward()
    {
        // The recomputation replays the forward's dropout draws and then puts the generator back where the forward left it.
        using var model = Stories260K(0.1);
        using var scope = NewDisposeScope();
        var ids = randint(3, model.VocabSize, [2, 48], generator: new Generator(5), dtype: ScalarType.Int64);
        var parameters = model.Adapters.TrainableNamedParameters();
        Backward(model.Network, parameters, true, ids, ids);
        var afterCheckpointed = rand(4);
        Backward(model.Network, parameters, false, ids, ids);
        var afterPlain = rand(4);
        TensorAssert.Equal(afterPlain, afterCheckpointed, "the next random draw");
    }

    [Theory]
    [InlineData("tiny-gpt2", "h.0.")]
    [InlineData("tiny-bert", "layer.0.")]
    public void GradientsAreBitIdenticalOnGpt2AndBert(string fixture, string firstBlock)
    {
        using var loaded = ModelLoader.Load(AdapterTestFiles.Fixture("models", fixture), new ModelLoadOptions { Attention = AttentionImplementation.Eager });
        var set = new LoraAdapterSet(loaded.Model);
        set.Add("default", new LoraConfig { Rank = 4, Alpha = 8, Dropout = 0.1, TargetModules = ModuleSelection.AllLinear }, seed: 7);
        PeftModelTestFiles.RandomizeB(set, "default", seed: 3);
        using var scope = NewDisposeScope();
        var r = PeftModelTestFiles.Reference(fixture);
        AssertSameGradients(loaded.Model, set.TrainableNamedParameters(), r["input_ids"], r["labels"], r["attention_mask"], firstBlock);
    }

    [Fact]
    public void EvalAndNoGradForwardsAreUnaffected()
    {
        using var model = Stories260K(0.0);
        using var scope = NewDisposeScope();
        var ids = randint(3, model.VocabSize, [1, 16], generator: new Generator(5), dtype: ScalarType.Int64);
        var network = model.Network;
        network.GradientCheckpointing = true;
        network.eval();
        var evalLogits = network.Forward(ids).Logits!;
        Assert.True(evalLogits.requires_grad);
        network.train();
        using (no_grad()) TensorAssert.Equal(evalLogits.detach(), network.Forward(ids).Logits!, "no_grad logits");
        // Generation with a KV cache runs the plain layers even in training mode.
        using var cache = network.CreateKvCache();
        TensorAssert.Close(evalLogits.detach(), network.Forward(ids, cache: cache).Logits!.detach(), 1e-5, "cached logits");
        Assert.Equal(16, cache.Length);
        network.GradientCheckpointing = false;
    }

    [Fact]
    public void TheSwitchIsSharedByTheHeadAndItsBody()
    {
        using var model = Stories260K(0.0);
        var head = (LlamaForCausalLM)model.Network;
        head.GradientCheckpointing = true;
        Assert.True(head.Model.GradientCheckpointing);
        head.Model.GradientCheckpointing = false;
        Assert.False(head.GradientCheckpointing);
    }

    /// <summary>Native bytes held after the forward, before the backward: the activations autograd keeps.</summary>
    static long HeldAfterForward(TransformerModel network, bool checkpointing, Tensor ids)
    {
        network.train();
        network.GradientCheckpointing = checkpointing;
        using var scope = NewDisposeScope();
        long before = NativeHeap.AllocatedBytes()!.Value;
        var loss = network.ComputeLoss(network.Forward(ids), ids);
        long held = NativeHeap.AllocatedBytes()!.Value - before;
        loss.backward();
        network.GradientCheckpointing = false;
        return held;
    }

    [Fact]
    public void TheForwardHoldsFarLessMemory()
    {
        if (NativeHeap.AllocatedBytes() is null) return; // needs glibc's mallinfo2 to count the native heap
        using var model = Stories260K(0.0);
        using var scope = NewDisposeScope();
        var ids = randint(3, model.VocabSize, [4, 256], generator: new Generator(5), dtype: ScalarType.Int64);
        HeldAfterForward(model.Network, false, ids);
        HeldAfterForward(model.Network, true, ids);
        long plain = HeldAfterForward(model.Network, false, ids);
        long checkpointed = HeldAfterForward(model.Network, true, ids);
        // 5 layers of hidden 64: the plain forward keeps every projection, attention output and MLP state of each
        // layer; the checkpointed one keeps one [4, 256, 64] input per layer, plus the logits both keep.
        Assert.True(checkpointed < plain / 2, $"held after the forward: {checkpointed:N0} B checkpointed vs {plain:N0} B plain");
    }

    [Fact]
    public void TheTrainerGivesTheSameAdapterAndRecordsTheOption()
    {
        using var folder = new TempFolder();
        var results = new List<TrainingResult>();
        foreach (var (run, checkpointing) in new[] { ("plain", false), ("checkpointed", true) })
        {
            using var model = Stories(dropout: 0.1);
            var during = new List<bool>();
            var progress = new SyncProgress<TrainingProgress>(_ => during.Add(model.Network.GradientCheckpointing));
            results.Add(LoraTrainer.Run(model, Arithmetic(model), Options(folder.Sub(run)) with { MaxSteps = 3, GradientCheckpointing = checkpointing }, progress));
            Assert.Equal([checkpointing, checkpointing, checkpointing], during);
            // The option is for the run; the model is left as it was.
            Assert.False(model.Network.GradientCheckpointing);
        }
        Assert.Equal(Losses(folder.Sub("plain")), Losses(folder.Sub("checkpointed")));
        using var scope = NewDisposeScope();
        var a = AdapterTensors(results[0].AdapterPath);
        var b = AdapterTensors(results[1].AdapterPath);
        foreach (var (key, tensor) in a) TensorAssert.Equal(tensor, b[key], key);
        Assert.True(new RunFolder(folder.Sub("checkpointed")).ReadManifest().Options.GradientCheckpointing);
        Assert.False(new RunFolder(folder.Sub("plain")).ReadManifest().Options.GradientCheckpointing);
    }

    [Fact]
    public void AResumedRunKeepsCheckpointing()
    {
        using var folder = new TempFolder();
        using var cts = new CancellationTokenSource();
        using (var model = Stories(dropout: 0.1))
        {
            var progress = new SyncProgress<TrainingProgress>(p => { if (p.Step == 2) cts.Cancel(); });
            var partial = LoraTrainer.Run(model, Arithmetic(model), Options(folder.Path) with { MaxSteps = 3, GradientCheckpointing = true }, progress, cts.Token);
            Assert.Equal(StopReason.Cancelled, partial.StopReason);
        }
        using (var model = Stories(withAdapter: false))
        {
            var during = new List<bool>();
            var progress = new SyncProgress<TrainingProgress>(_ => during.Add(model.Network.GradientCheckpointing));
            var resumed = LoraTrainer.Resume(folder.Path, model, Arithmetic(model), progress);
            Assert.Equal(StopReason.Completed, resumed.StopReason);
            Assert.Equal([true], during);
            Assert.False(model.Network.GradientCheckpointing);
        }
    }

    [Fact]
    public void LiveTensorsStayFlat()
    {
        using var folder = new TempFolder();
        using var model = Stories(dropout: 0.1);
        var stats = DisposeScopeManager.Statistics;
        var counts = new Dictionary<long, long>();
        var progress = new SyncProgress<TrainingProgress>(p => counts[p.Step] = stats.ThreadTotalLiveCount);
        LoraTrainer.Run(model, Arithmetic(model), Options(folder.Path) with
        {
            MaxSteps = 20, GlobalBatchSize = 2, MicroBatchSize = 1, GradientCheckpointing = true,
        }, progress);
        Assert.Equal(counts[2], counts[20]);
    }
}
