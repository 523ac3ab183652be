namespace LoraPS.Tokenization;

/// <summary>
/// Token ↔ id maps of a tokenizer (model vocabulary plus added tokens) while it is being assembled, and the
/// resolution of its BOS/EOS/PAD/UNK tokens from the config files.
/// </summary>
internal sealed class Vocabulary
{
    private readonly Dictionary<string, int> _tokenToId;
    private readonly Dictionary<int, string> _idToToken = [];
    private readonly List<AddedToken> _added = [];
    private readonly HashSet<string> _addedContents = new(StringComparer.Ordinal);
    private readonly TokenizerSettings _settings;

    public Vocabulary(Dictionary<string, int> modelVocab, IEnumerable<AddedToken> added, TokenizerSettings settings)
    {
        _settings = settings;
        _tokenToId = new Dictionary<string, int>(modelVocab, StringComparer.Ordinal);
        foreach ((string token, int id) in modelVocab)
        {
            _idToToken.TryAdd(id, token);
        }
        foreach (AddedToken token in added.Concat(settings.AddedTokensDecoder))
        {
            Register(token);
        }
    }

    private void Register(AddedToken token)
    {
        if (!_addedContents.Add(token.Content))
        {
            return;
        }
        _added.Add(token);
        _tokenToId[token.Content] = token.Id;
        _idToToken[token.Id] = token.Content;
    }

    /// <summary>
    /// The id of a special token named in the config files. Like transformers, a token missing from the
    /// vocabulary is added with the next free id; one already there becomes an added special token, so that it is
    /// recognised in text and skipped when decoding.
    /// </summary>
    private int EnsureSpecial(string token)
    {
        if (_addedContents.Contains(token))
        {
            int index = _added.FindIndex(a => a.Content == token);
            _added[index] = _added[index] with { Special = true };
            return _added[index].Id;
        }
        int id = _tokenToId.TryGetValue(token, out int known) ? known : _idToToken.Keys.Max() + 1;
        Register(new AddedToken(id, token, Special: true));
        return id;
    }

    /// <summary>
    /// Resolves each special token: a config file that names it (even as null) decides; otherwise the id from
    /// generation_config.json/config.json; otherwise the tokenizer format's own default.
    /// </summary>
    public ResolvedSpecialTokens Resolve(int? bosDefault, int? eosDefault, int? padDefault, string? unkDefault)
    {
        int? One(string key, int? configId, int? formatDefault)
        {
            TokenSetting setting = _settings.Token(key);
            if (setting.Mentioned)
            {
                return setting.Token is null ? null : EnsureSpecial(setting.Token);
            }
            if (configId is int id && _idToToken.TryGetValue(id, out string? token))
            {
                return EnsureSpecial(token);
            }
            return formatDefault is int d && _idToToken.TryGetValue(d, out string? defaultToken) ? EnsureSpecial(defaultToken) : null;
        }

        int? bos = One("bos_token", _settings.GenerationBosId, bosDefault);
        int? eos = One("eos_token", _settings.GenerationEosIds.Count > 0 ? _settings.GenerationEosIds[0] : null, eosDefault);
        // EOS first (the one a template appends), then every other stop id generation_config.json lists.
        var eosIds = new List<int>();
        foreach (int id in (eos is int e ? [e] : Array.Empty<int>()).Concat(_settings.GenerationEosIds))
        {
            if (!eosIds.Contains(id))
            {
                eosIds.Add(id);
            }
        }
        int? pad = One("pad_token", _settings.GenerationPadId, padDefault);
        int? unk = One("unk_token", null, unkDefault is not null && _tokenToId.TryGetValue(unkDefault, out int u) ? u : null);
        int? cls = One("cls_token", null, null);
        int? sep = One("sep_token", null, null);
        int? mask = One("mask_token", null, null);
        foreach (string extra in _settings.AdditionalSpecialTokens)
        {
            EnsureSpecial(extra);
        }
        return new ResolvedSpecialTokens(bos, eosIds, pad, unk, cls, sep, mask);
    }

    public TokenizerParts Finish(string kind, string sourcePath, TextNormalizer? normalizer, PreTokenizerStep? preTokenizer,
        ITokenModel model, TokenDecoder? decoder, SpecialTokenTemplate template, ResolvedSpecialTokens specials, bool cleanUpTokenizationSpaces)
    {
        var specialIds = _added.Where(a => a.Special).Select(a => a.Id).ToHashSet();
        foreach (int? id in new[] { specials.Bos, specials.Pad, specials.Unk, specials.Cls, specials.Sep, specials.Mask })
        {
            if (id is int i)
            {
                specialIds.Add(i);
            }
        }
        specialIds.UnionWith(specials.Eos.Where(_idToToken.ContainsKey));
        return new TokenizerParts
        {
            Kind = kind,
            SourcePath = sourcePath,
            Splitter = new AddedTokenSplitter(_added, normalizer),
            Normalizer = normalizer,
            PreTokenizer = preTokenizer,
            Model = model,
            Decoder = decoder,
            Template = template,
            TokenToId = _tokenToId,
            IdToToken = _idToToken,
            SpecialIds = specialIds,
            Specials = specials,
            CleanUpTokenizationSpaces = cleanUpTokenizationSpaces,
        };
    }
}
