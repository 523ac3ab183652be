using LoraPS.Models;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Models.ModelTestFiles;

namespace LoraPS.Tests.Models;

public class ModelConfigTests
{
    private const string LlamaCore = "\"vocab_size\": 100, \"hidden_size\": 32, \"intermediate_size\": 48, \"num_hidden_layers\": 1, \"num_attention_heads\": 4";

    private static ModelConfig Llama(string extra = "") => ModelConfig.Parse($"{{\"model_type\": \"llama\", {LlamaCore}{extra}}}", "test/config.json");

    [Fact]
    public void FixtureConfigsAreNormalisedAcrossArchitectures()
    {
        var llama = ModelConfig.Load(Fixture("tiny-llama"));
        Assert.Equal((ModelArchitecture.Llama, 2, 16, 1e-6, false, "silu"), (llama.Architecture, llama.NumKeyValueHeads, llama.HeadDim, llama.NormEpsilon, llama.TieWordEmbeddings, llama.HiddenAct));
        Assert.Equal((1, (int?)null), (llama.BosTokenId!.Value, llama.PadTokenId));
        Assert.Equal(new[] { 2 }, llama.EosTokenIds);
        Assert.Equal("float32", llama.TorchDtype);
        Assert.Equal(torch.ScalarType.Float32, llama.StoredScalarType);
        Assert.Null(llama.RopeScaling);

        var qwen = ModelConfig.Load(Fixture("tiny-qwen2"));
        Assert.True(qwen.QkvBias && qwen.TieWordEmbeddings && !qwen.AttentionBias);
        Assert.Null(qwen.SlidingWindow);   // use_sliding_window is false

        var gpt2 = ModelConfig.Load(Fixture("tiny-gpt2"));
        Assert.Equal((64, 256, 4, 2, 64, 1e-5, "gelu_new", true), (gpt2.HiddenSize, gpt2.IntermediateSize, gpt2.NumAttentionHeads, gpt2.NumHiddenLayers, gpt2.MaxPositionEmbeddings, gpt2.NormEpsilon, gpt2.HiddenAct, gpt2.TieWordEmbeddings));

        var bert = ModelConfig.Load(Fixture("tiny-bert"));
        Assert.Equal((2, 0, 1e-12, "gelu", 2), (bert.TypeVocabSize, bert.PadTokenId!.Value, bert.NormEpsilon, bert.HiddenAct, bert.NumLabels));
        Assert.False(bert.IsDecoder);

        var roberta = ModelConfig.Load(Fixture("tiny-roberta"));
        Assert.Equal((1, 1, 66, 0), (roberta.TypeVocabSize, roberta.PadTokenId!.Value, roberta.MaxPositionEmbeddings, roberta.BosTokenId!.Value));
        Assert.Equal(ModelHeadKind.SequenceClassification, ModelFactory.DefaultHead(roberta));
        Assert.Equal(ModelHeadKind.CausalLM, ModelFactory.DefaultHead(gpt2));
    }

    [Fact]
    public void ArchitectureDefaultsApplyWhenKeysAreAbsent()
    {
        var c = Llama();
        Assert.Equal((4, 8, 10000.0, 1e-6, false, "silu", 2048), (c.NumKeyValueHeads, c.HeadDim, c.RopeTheta, c.NormEpsilon, c.TieWordEmbeddings, c.HiddenAct, c.MaxPositionEmbeddings));
        var gpt2 = ModelConfig.Parse("{\"model_type\": \"gpt2\", \"vocab_size\": 10, \"n_embd\": 8, \"n_layer\": 1, \"n_head\": 2}");
        Assert.True(gpt2.TieWordEmbeddings);   // PretrainedConfig default
        Assert.Equal((32, "gelu_new", 1024, 50256), (gpt2.IntermediateSize, gpt2.HiddenAct, gpt2.MaxPositionEmbeddings, gpt2.EosTokenIds.Single()));
        var bert = ModelConfig.Parse($"{{\"model_type\": \"bert\", {LlamaCore}}}");
        Assert.Equal((2, 1e-12, 0, 0.1), (bert.TypeVocabSize, bert.NormEpsilon, bert.PadTokenId!.Value, bert.HiddenDropout));
    }

    [Fact]
    public void ReadsTokenIdsLabelsBiasesAndDtype()
    {
        var c = Llama(", \"eos_token_id\": [128001, 128008, 128009], \"pad_token_id\": 5, \"bos_token_id\": null, " +
                      "\"id2label\": {\"0\": \"neg\", \"1\": \"neu\", \"2\": \"pos\"}, \"attention_bias\": true, \"mlp_bias\": true, " +
                      "\"tie_word_embeddings\": true, \"dtype\": \"bfloat16\", \"head_dim\": 16, \"num_key_value_heads\": 2");
        Assert.Equal(new[] { 128001, 128008, 128009 }, c.EosTokenIds);
        Assert.Equal((5, (int?)null), (c.PadTokenId!.Value, c.BosTokenId));
        Assert.Equal(3, c.NumLabels);
        Assert.Equal("pos", c.Id2Label[2]);
        Assert.True(c.AttentionBias && c.MlpBias && c.TieWordEmbeddings);
        Assert.Equal(torch.ScalarType.BFloat16, c.StoredScalarType);
        // An explicit head_dim wins over hidden/heads (Mistral-Nemo style): q_proj is heads·head_dim wide.
        Assert.Equal(16, c.HeadDim);
        using var model = ModelFactory.Create(c, ModelHeadKind.CausalLM, torch.META);
        var sd = model.state_dict();
        Assert.Equal(new long[] { 64, 32 }, sd["model.layers.0.self_attn.q_proj.weight"].shape);
        Assert.Equal(new long[] { 32, 32 }, sd["model.layers.0.self_attn.k_proj.weight"].shape);
        Assert.Equal(new long[] { 32, 64 }, sd["model.layers.0.self_attn.o_proj.weight"].shape);
        Assert.Equal(new long[] { 32 }, sd["model.layers.0.self_attn.o_proj.bias"].shape);
        Assert.Equal(new long[] { 48 }, sd["model.layers.0.mlp.up_proj.bias"].shape);
        Assert.Equal(3, Llama(", \"num_labels\": 3").NumLabels);
    }

    [Fact]
    public void AcceptsAllThreeRopeSpellings()
    {
        var llama3 = Llama(", \"rope_theta\": 500000.0, \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}");
        Assert.Equal(500000.0, llama3.RopeTheta);
        Assert.Equal(new RopeScaling("llama3", 8.0, 1.0, 4.0, 8192), llama3.RopeScaling);

        var linear = Llama(", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}");
        Assert.Equal("linear", linear.RopeScaling!.Type);
        Assert.Equal(2.0, linear.RopeScaling.Factor);

        var v5 = Llama(", \"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}");
        Assert.Equal(500000.0, v5.RopeTheta);
        Assert.Equal(32.0, v5.RopeScaling!.Factor);
        var v5Default = Llama(", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1000000.0}");
        Assert.Equal((1e6, (RopeScaling?)null), (v5Default.RopeTheta, v5Default.RopeScaling));
    }

    [Theory]
    [InlineData("dynamic")]
    [InlineData("yarn")]
    [InlineData("longrope")]
    public void UnsupportedRopeScalingSaysSo(string type)
    {
        var e = Assert.Throws<ModelConfigException>(() => Llama($", \"rope_scaling\": {{\"rope_type\": \"{type}\", \"factor\": 4.0}}"));
        Assert.Contains($"'{type}' is not supported yet", e.Message);
        Assert.Contains("test/config.json", e.Message);
    }

    [Fact]
    public void BadConfigsNameTheFileAndTheKey()
    {
        var unknown = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse("{\"model_type\": \"falcon\"}", "x/config.json"));
        Assert.Contains("'falcon' is not supported", unknown.Message);
        Assert.Contains("llama, mistral, qwen2, gpt2, bert, roberta", unknown.Message);

        var noType = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse("{}", "x/config.json"));
        Assert.Contains("'model_type'", noType.Message);

        var missing = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse("{\"model_type\": \"llama\", \"vocab_size\": 10}", "x/config.json"));
        Assert.Contains("'x/config.json' has no 'hidden_size'", missing.Message);

        var gpt2Missing = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse("{\"model_type\": \"gpt2\", \"vocab_size\": 10, \"n_embd\": 8, \"n_layer\": 1}", "g/config.json"));
        Assert.Contains("'n_head'", gpt2Missing.Message);

        var wrongType = Assert.Throws<ModelConfigException>(() => Llama(", \"rms_norm_eps\": \"small\""));
        Assert.Contains("'rms_norm_eps' must be a number", wrongType.Message);

        var notJson = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse("{\"model_type\": \"llama\",", "broken/config.json"));
        Assert.Contains("'broken/config.json' is not valid JSON", notJson.Message);
        Assert.Equal("broken/config.json", notJson.FilePath);

        var heads = Assert.Throws<ModelConfigException>(() => Llama(", \"num_key_value_heads\": 3"));
        Assert.Contains("multiple of num_key_value_heads", heads.Message);

        var act = Assert.Throws<ModelConfigException>(() => ModelFactory.Create(Llama(", \"hidden_act\": \"swiglu_custom\""), ModelHeadKind.CausalLM, torch.META));
        Assert.Contains("'swiglu_custom' is not supported", act.Message);

        var nowhere = Path.Combine(Path.GetTempPath(), "loraps-no-such-model-" + Guid.NewGuid());
        Assert.Contains("does not exist", Assert.Throws<ModelConfigException>(() => ModelConfig.Load(nowhere)).Message);

        var qwenWindow = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse($"{{\"model_type\": \"qwen2\", {LlamaCore}, \"use_sliding_window\": true}}"));
        Assert.Contains("use_sliding_window", qwenWindow.Message);
        var relative = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse($"{{\"model_type\": \"bert\", {LlamaCore}, \"position_embedding_type\": \"relative_key\"}}"));
        Assert.Contains("relative_key", relative.Message);
    }
}
