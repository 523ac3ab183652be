using LoraPS.Models;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using Xunit;
using static LoraPS.Tests.Models.ModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Models;

/// <summary>Swapping a Linear for a wrapper must change what forward() calls and what the module tree reports.</summary>
public class ReplaceModuleTests
{
    /// <summary>A stand-in for a LoRA wrapper: <c>base_layer(x) · scale</c>, counting calls.</summary>
    private sealed class ScaledLinear : nn.Module<Tensor, Tensor>
    {
        [ComponentName(Name = "base_layer")] private readonly Linear _baseLayer;

        public ScaledLinear(Linear baseLayer, double scale) : base(nameof(ScaledLinear))
        {
            _baseLayer = baseLayer;
            Scale = scale;
            RegisterComponents();
        }

        public double Scale { get; set; }
        public int Calls { get; private set; }

        public override Tensor forward(Tensor x)
        {
            Calls++;
            return _baseLayer.call(x) * Scale;
        }
    }

    [Fact]
    public void ReplacedLinearIsCalledAndListedInPlace()
    {
        using var loaded = ModelLoader.Load(Fixture("tiny-llama"));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var model = loaded.Model;
        var ids = Reference("tiny-llama")["input_ids"];
        var before = model.Forward(ids).Logits!;
        var parametersBefore = model.parameters().Count();

        const string path = "model.layers.0.self_attn.q_proj";
        var original = model.GetModule(path);
        var wrapper = (ScaledLinear)model.ReplaceModule(path, old => new ScaledLinear((Linear)old, 1.0));

        Assert.Same(wrapper, model.GetModule(path));
        Assert.Same(original, model.GetModule(path + ".base_layer"));
        var names = model.named_modules().Select(m => m.name).ToList();
        Assert.Contains(path + ".base_layer", names);
        // Order of the siblings is kept: q_proj still comes before k_proj.
        var attention = model.GetModule("model.layers.0.self_attn").named_children().Select(c => c.name);
        Assert.Equal(new[] { "q_proj", "k_proj", "v_proj", "o_proj" }, attention);
        var keys = model.state_dict().Keys.ToList();
        Assert.Contains(path + ".base_layer.weight", keys);
        Assert.DoesNotContain(path + ".weight", keys);
        Assert.Equal(parametersBefore, model.parameters().Count());
        Assert.Contains(model.LinearLayers(), l => l.Path == path + ".base_layer");

        // Scale 1: same logits, and the wrapper really ran.
        AssertClose(before, model.Forward(ids).Logits!, 0, 0, "identity wrapper");
        Assert.Equal(1, wrapper.Calls);
        // Scale 0 removes the queries of layer 0: the logits must move.
        wrapper.Scale = 0.0;
        Assert.True(MaxAbsDiff(before, model.Forward(ids).Logits!) > 1e-3);

        // Replacing the wrapper by its base layer restores the original model exactly.
        model.ReplaceModule(path, w => ((ScaledLinear)w).named_children().Single().module);
        AssertClose(before, model.Forward(ids).Logits!, 0, 0, "restored");
        Assert.Equal(parametersBefore, model.parameters().Count());
    }

    [Fact]
    public void EveryLinearCanBeWrapped()
    {
        foreach (var name in new[] { "tiny-llama", "tiny-qwen2", "tiny-gpt2", "tiny-bert", "tiny-roberta" }) {
            using var loaded = ModelLoader.Load(Fixture(name));
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var model = loaded.Model;
            var ids = Reference(name)["input_ids"];
            var before = model.Forward(ids).Logits!;
            var wrappers = model.LinearLayers()
                // A tied lm_head is the embedding's weight; wrapping it is fine but pointless here.
                .Where(l => l.Path != "lm_head")
                .Select(l => (ScaledLinear)model.ReplaceModule(l.Path, old => new ScaledLinear((Linear)old, 1.0)))
                .ToList();
            AssertClose(before, model.Forward(ids).Logits!, 1e-6, 0, $"{name} wrapped");
            Assert.All(wrappers, w => Assert.Equal(1, w.Calls));
            if (name == "tiny-gpt2")
                Assert.Contains("transformer.h.0.attn.c_attn", model.FanInFanOutModules);
        }
    }

    [Fact]
    public void ModuleListSlotsCanBeReplacedByTheirElementType()
    {
        using var loaded = ModelLoader.Load(Fixture("tiny-llama"));
        var config = loaded.Config;
        torch.manual_seed(3);
        using var donor = ModelFactory.Create(config, ModelHeadKind.CausalLM);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = Reference("tiny-llama")["input_ids"];
        var before = loaded.Model.Forward(ids).Logits!;

        var foreign = (LlamaDecoderLayer)donor.GetModule("model.layers.1");
        loaded.Model.ReplaceModule("model.layers.0", _ => foreign);
        Assert.Same(foreign, loaded.Model.GetModule("model.layers.0"));
        Assert.Equal(new[] { "0", "1" }, loaded.Model.GetModule("model.layers").named_children().Select(c => c.name));
        Assert.True(MaxAbsDiff(before, loaded.Model.Forward(ids).Logits!) > 1e-3);
        Assert.Same(foreign.named_parameters().First().parameter, loaded.Model.state_dict()["model.layers.0.self_attn.q_proj.weight"]);
    }

    [Fact]
    public void BadReplacementsFailClearly()
    {
        using var loaded = ModelLoader.Load(Fixture("tiny-llama"));
        var model = loaded.Model;

        var missing = Assert.Throws<KeyNotFoundException>(() => model.ReplaceModule("model.layers.0.self_attn.qq_proj", m => m));
        Assert.Contains("q_proj, k_proj, v_proj, o_proj", missing.Message);

        // self_attn is held as LlamaAttention (its forward takes RoPE and mask), not as a swappable Module<Tensor, Tensor>.
        var typed = Assert.Throws<InvalidOperationException>(() =>
            model.ReplaceModule("model.layers.0.self_attn", m => new ScaledLinear(nn.Linear(1, 1), 1)));
        Assert.Contains("Module<Tensor, Tensor>", typed.Message);
        // The decoder layer list holds LlamaDecoderLayer; a module of another type cannot go there.
        var inList = Assert.Throws<InvalidOperationException>(() =>
            model.ReplaceModule("model.layers.1", m => new ScaledLinear(nn.Linear(1, 1), 1)));
        Assert.Contains("LlamaDecoderLayer", inList.Message);
        // Failed replacements leave the model intact.
        Assert.IsType<LlamaAttention>(model.GetModule("model.layers.0.self_attn"));
        Assert.IsType<LlamaDecoderLayer>(model.GetModule("model.layers.1"));
    }
}
