using LoraPS.Checkpoints;
using LoraPS.Models;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Models.ModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Models;

/// <summary>Checkpoint variants the loader must accept (and report), and broken ones it must reject clearly.</summary>
public sealed class ModelLoaderTests : IDisposable
{
    private readonly string _temp = Path.Combine(Path.GetTempPath(), "loraps-models-" + Guid.NewGuid().ToString("N"));

    public ModelLoaderTests() => Directory.CreateDirectory(_temp);

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    /// <summary>Writes a copy of a fixture with its tensors passed through <paramref name="edit"/> (and optionally its config text).</summary>
    private string Variant(string fixture, Func<Dictionary<string, Tensor>, Dictionary<string, Tensor>> edit, Func<string, string>? editConfig = null)
    {
        var dir = Path.Combine(_temp, fixture + "-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(dir);
        var config = File.ReadAllText(Path.Combine(Fixture(fixture), "config.json"));
        File.WriteAllText(Path.Combine(dir, "config.json"), editConfig?.Invoke(config) ?? config);
        using var scope = NewDisposeScope();
        using var file = SafetensorsFile.Open(Path.Combine(Fixture(fixture), "model.safetensors"));
        var tensors = edit(file.Entries.ToDictionary(e => e.Name, e => file.ReadTensor(e.Name)));
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
        return dir;
    }

    private static void AssertLogitsMatchReference(LoadedModel loaded, string fixture)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var r = Reference(fixture);
        AssertClose(r["logits"], loaded.Model.Forward(r["input_ids"], r["attention_mask"]).Logits!, 1e-4, 1e-4, fixture);
    }

    [Fact]
    public void LoadsTheOfficialGpt2LayoutWithoutPrefixAndWithMaskBuffers()
    {
        // openai-community/gpt2 style: no "transformer." prefix, plus h.N.attn.bias / masked_bias buffers.
        var dir = Variant("tiny-gpt2", t => {
            var edited = t.ToDictionary(kv => kv.Key["transformer.".Length..], kv => kv.Value);
            for (var i = 0; i < 2; i++) {
                edited[$"h.{i}.attn.bias"] = torch.ones(1, 1, 64, 64).tril();
                edited[$"h.{i}.attn.masked_bias"] = torch.tensor(-1e4f);
            }
            return edited;
        });
        using var loaded = ModelLoader.Load(dir);
        AssertLogitsMatchReference(loaded, "tiny-gpt2");
        var report = loaded.Report;
        Assert.Equal(28, report.LoadedCount);
        Assert.Equal(28, report.Renamed.Count);
        Assert.Contains(new KeyRename("h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.weight"), report.Renamed);
        Assert.Equal(new[] { "h.0.attn.bias", "h.0.attn.masked_bias", "h.1.attn.bias", "h.1.attn.masked_bias" }, report.Ignored);
        Assert.Equal(8, report.Transposed.Count);
        Assert.Contains("transformer.h.1.mlp.c_fc.weight", report.Transposed);
        Assert.Equal(new TiedWeight("lm_head.weight", "transformer.wte.weight"), Assert.Single(report.Tied));
        Assert.Empty(report.Unexpected);
        Assert.Empty(report.Missing);
    }

    [Fact]
    public void TransposesGpt2Conv1DWeights()
    {
        using var loaded = ModelLoader.Load(Fixture("tiny-gpt2"));
        using var file = SafetensorsFile.Open(Path.Combine(Fixture("tiny-gpt2"), "model.safetensors"));
        using var scope = NewDisposeScope();
        var stored = file.ReadTensor("transformer.h.0.attn.c_attn.weight");          // [in 64, out 192]
        var held = loaded.Model.state_dict()["transformer.h.0.attn.c_attn.weight"];   // [out 192, in 64]
        Assert.Equal(new long[] { 192, 64 }, held.shape);
        Assert.True(held.allclose(stored.t(), 0, 0));
        Assert.Equal(8, loaded.Report.Transposed.Count);
    }

    [Fact]
    public void RenamesBertGammaBeta()
    {
        var dir = Variant("tiny-bert", t => t.ToDictionary(
            kv => kv.Key.Replace("LayerNorm.weight", "LayerNorm.gamma").Replace("LayerNorm.bias", "LayerNorm.beta"), kv => kv.Value));
        using var loaded = ModelLoader.Load(dir);
        AssertLogitsMatchReference(loaded, "tiny-bert");
        Assert.Equal(10, loaded.Report.Renamed.Count);   // embeddings + 2 per layer × 2 layers, weight and bias
        Assert.Contains(new KeyRename("bert.embeddings.LayerNorm.gamma", "bert.embeddings.LayerNorm.weight"), loaded.Report.Renamed);
    }

    [Fact]
    public void HeadCheckpointLoadsAsBaseModelAndBaseCheckpointIntoHead()
    {
        using (var body = ModelLoader.Load(Fixture("tiny-bert"), new ModelLoadOptions { Head = ModelHeadKind.Base })) {
            Assert.IsType<BertModel>(body.Model);
            Assert.Equal(new[] { "classifier.bias", "classifier.weight" }, body.Report.Unexpected);
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var r = Reference("tiny-bert");
            var output = body.Model.Forward(r["input_ids"], r["attention_mask"]);
            Assert.Null(output.Logits);
            Assert.Equal(new long[] { 2, 64 }, output.PooledOutput!.shape);
            AssertClose(r["hidden_states.2"], output.LastHiddenState, 1e-4, 1e-4, "bert body");
        }
        // A checkpoint of the bare body (sentence-transformers style: no "bert." prefix) under a classifier.
        var bodyOnly = Variant("tiny-bert", t => t.Where(kv => kv.Key.StartsWith("bert.")).ToDictionary(kv => kv.Key["bert.".Length..], kv => kv.Value));
        using var classifier = ModelLoader.Load(bodyOnly, new ModelLoadOptions { Head = ModelHeadKind.SequenceClassification, NumLabels = 3 });
        Assert.Equal(new[] { "classifier.weight", "classifier.bias" }.Order(), classifier.Report.Missing.Order());
        using var scope2 = NewDisposeScope();
        var weight = classifier.Model.state_dict()["classifier.weight"];
        Assert.Equal(new long[] { 3, 64 }, weight.shape);
        Assert.InRange(weight.std().item<float>(), 0.05, 0.15);   // N(0, initializer_range = 0.1)
        Assert.Equal(0, classifier.Model.state_dict()["classifier.bias"].abs().sum().item<float>());
    }

    [Fact]
    public void DecoderClassifierOnCausalCheckpointPoolsTheLastRealToken()
    {
        using var loaded = ModelLoader.Load(Fixture("tiny-llama"), new ModelLoadOptions { Head = ModelHeadKind.SequenceClassification, NumLabels = 3 });
        Assert.Equal(new[] { "score.weight" }, loaded.Report.Missing);
        Assert.Equal(new[] { "lm_head.weight" }, loaded.Report.Unexpected);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var r = Reference("tiny-llama");
        var ids = r["padded.input_ids"];
        var mask = r["padded.attention_mask"];
        var output = loaded.Model.Forward(ids, mask);
        Assert.Equal(new long[] { 2, 3 }, output.Logits!.shape);
        // No pad_token_id in this config: the pooled row is the last position the mask keeps (15 and 11).
        var score = (nn.Module<Tensor, Tensor>)loaded.Model.GetModule("score");
        var perToken = score.call(output.LastHiddenState);
        AssertClose(perToken[0][15], output.Logits[0], 1e-6, 0, "row 0");
        AssertClose(perToken[1][11], output.Logits[1], 1e-6, 0, "row 1");
        var loss = loaded.Model.ComputeLoss(output, torch.tensor(new long[] { 0, 2 }));
        Assert.True(loss.item<float>() > 0);

        // With a pad id, transformers picks the last token whose id is not the pad id (left padding included).
        var logits = torch.arange(2 * 5 * 1, dtype: ScalarType.Float32).reshape(2, 5, 1);
        var padIds = torch.tensor(new long[,] { { 7, 8, 9, 0, 0 }, { 0, 0, 4, 5, 6 } });
        var pooled = SequencePooling.LastToken(logits, padIds, null, padTokenId: 0);
        Assert.Equal(new[] { 2f, 9f }, pooled.reshape(-1).data<float>().ToArray());
    }

    [Fact]
    public void ConvertsStoredHalfPrecisionWeights()
    {
        foreach (var stored in new[] { ScalarType.BFloat16, ScalarType.Float16 }) {
            var dir = Variant("tiny-llama", t => t.ToDictionary(kv => kv.Key, kv => kv.Value.to(stored)));
            using var loaded = ModelLoader.Load(dir);
            Assert.All(loaded.Model.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var r = Reference("tiny-llama");
            var diff = MaxAbsDiff(r["logits"], loaded.Model.Forward(r["input_ids"]).Logits!);
            Assert.InRange(diff, 1e-7, 0.2);   // rounded weights: close to, but not equal to, the fp32 reference
        }
    }

    [Fact]
    public void UnexpectedKeysAreReportedNotFatal()
    {
        var dir = Variant("tiny-llama", t => { t["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8); t["extra.weight"] = torch.ones(2); return t; });
        using var loaded = ModelLoader.Load(dir);
        Assert.Equal(new[] { "extra.weight" }, loaded.Report.Unexpected);
        Assert.Equal(new[] { "model.layers.0.self_attn.rotary_emb.inv_freq" }, loaded.Report.Ignored);
        AssertLogitsMatchReference(loaded, "tiny-llama");
    }

    [Fact]
    public void MissingWeightsAreAnErrorNamingThem()
    {
        var dir = Variant("tiny-llama", t => { t.Remove("model.layers.1.mlp.up_proj.weight"); t.Remove("lm_head.weight"); return t; });
        var e = Assert.Throws<ModelLoadException>(() => ModelLoader.Load(dir));
        Assert.Contains("lacks 2 weight(s)", e.Message);
        Assert.Contains("model.layers.1.mlp.up_proj.weight", e.Message);
        Assert.Contains("lm_head.weight", e.Message);
        Assert.Contains(dir, e.Message);
    }

    [Fact]
    public void ShapeMismatchNamesKeyAndBothShapes()
    {
        var dir = Variant("tiny-llama", t => t, config => config.Replace("\"intermediate_size\": 128", "\"intermediate_size\": 96"));
        var e = Assert.Throws<ModelLoadException>(() => ModelLoader.Load(dir));
        Assert.Contains("'model.layers.0.mlp.gate_proj.weight': the model expects [96, 64] from its config, the checkpoint has [128, 64]", e.Message);
        Assert.Contains("6 shape mismatch", e.Message);

        var gpt2 = Variant("tiny-gpt2", t => t, config => config.Replace("\"n_embd\": 64", "\"n_embd\": 32"));
        var g = Assert.Throws<ModelLoadException>(() => ModelLoader.Load(gpt2));
        Assert.Contains("stored transposed", g.Message);
    }

    [Fact]
    public void MissingDirectoryOrWeightsFailClearly()
    {
        Assert.Throws<DirectoryNotFoundException>(() => ModelLoader.Load(Path.Combine(_temp, "nope")));
        var empty = Path.Combine(_temp, "only-config");
        Directory.CreateDirectory(empty);
        File.Copy(Path.Combine(Fixture("tiny-llama"), "config.json"), Path.Combine(empty, "config.json"));
        Assert.Throws<FileNotFoundException>(() => ModelLoader.Load(empty));
        var noConfig = Path.Combine(_temp, "no-config");
        Directory.CreateDirectory(noConfig);
        Assert.Contains("config.json", Assert.Throws<ModelConfigException>(() => ModelLoader.Load(noConfig)).Message);
    }

    [Fact]
    public void LoadingAndForwardLeaveNoLiveTensors()
    {
        var stats = DisposeScopeManager.Statistics;
        var before = stats.ThreadTotalLiveCount;
        using (var loaded = ModelLoader.Load(Fixture("tiny-qwen2"))) {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var r = Reference("tiny-qwen2");
            using var cache = loaded.Model.CreateKvCache();
            loaded.Model.Forward(r["input_ids"], r["attention_mask"], cache, outputHiddenStates: true);
            loaded.Model.Forward(r["input_ids"].narrow(1, 0, 1), cache: cache);
        }
        Assert.Equal(before, stats.ThreadTotalLiveCount);
    }

    [Fact]
    public void LoadedModelsAreFrozenInEvalModeUnlessAsked()
    {
        using var frozen = ModelLoader.Load(Fixture("tiny-bert"));
        Assert.All(frozen.Model.parameters(), p => Assert.False(p.requires_grad));
        Assert.False(frozen.Model.training);
        using var trainable = ModelLoader.Load(Fixture("tiny-bert"), new ModelLoadOptions { RequiresGrad = true });
        Assert.All(trainable.Model.parameters(), p => Assert.True(p.requires_grad));
    }
}
