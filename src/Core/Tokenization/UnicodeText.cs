using System.Globalization;
using System.Text;

namespace LoraPS.Tokenization;

/// <summary>Unicode helpers that behave like the Rust/Python functions the reference tokenizers call.</summary>
internal static class UnicodeText
{
    /// <summary>
    /// Lowercases like Rust's <c>str::to_lowercase</c> and Python's <c>str.lower</c>: the invariant mapping plus
    /// the two context rules .NET leaves out — 'İ' → "i̇" and a final capital sigma → 'ς'.
    /// </summary>
    public static string ToLowerFull(string text)
    {
        string lower = text.ToLowerInvariant();
        if (text.IndexOf('\u0130') < 0 && text.IndexOf('\u03A3') < 0)
        {
            return lower;
        }
        var sb = new StringBuilder(text.Length + 4);
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c == '\u0130')
            {
                sb.Append("i\u0307");
            }
            else if (c == '\u03A3')
            {
                sb.Append(IsFinalSigma(text, i) ? '\u03C2' : '\u03C3');
            }
            else
            {
                sb.Append(lower[i]);
            }
        }
        return sb.ToString();
    }

    // Unicode's Final_Sigma: preceded by a cased letter and not followed by one (case-ignorable marks skipped).
    private static bool IsFinalSigma(string text, int index)
    {
        int before = index - 1;
        while (before >= 0 && IsCaseIgnorable(text[before]))
        {
            before--;
        }
        if (before < 0 || !IsCased(text[before]))
        {
            return false;
        }
        int after = index + 1;
        while (after < text.Length && IsCaseIgnorable(text[after]))
        {
            after++;
        }
        return after >= text.Length || !IsCased(text[after]);
    }

    private static bool IsCased(char c) => char.GetUnicodeCategory(c) is
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter;

    private static bool IsCaseIgnorable(char c) => c is '\'' or '.' or ':' or '\u00B7' or '\u2019' ||
        char.GetUnicodeCategory(c) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark
            or UnicodeCategory.Format or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol;

    /// <summary>Drops Mn (BERT) or all marks Mn/Mc/Me (HF StripAccents).</summary>
    public static string RemoveMarks(string text, bool nonSpacingOnly)
    {
        var sb = new StringBuilder(text.Length);
        foreach (Rune r in text.EnumerateRunes())
        {
            UnicodeCategory cat = Rune.GetUnicodeCategory(r);
            bool mark = nonSpacingOnly
                ? cat == UnicodeCategory.NonSpacingMark
                : cat is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark;
            if (!mark)
            {
                sb.Append(r.ToString());
            }
        }
        return sb.ToString();
    }

    /// <summary>Rust's <c>char::is_other</c>: general category C* (Cc, Cf, Cs, Co, Cn).</summary>
    public static bool IsOther(UnicodeCategory cat) => cat is UnicodeCategory.Control or UnicodeCategory.Format
        or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned;

    /// <summary>The CJK ideograph blocks BERT isolates (Google's original <c>_is_chinese_char</c>).</summary>
    public static bool IsCjkIdeograph(int cp) =>
        (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
        (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
        (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);

    /// <summary>BERT punctuation: any ASCII punctuation/symbol (so "$", "+", "^" count) or Unicode category P*.</summary>
    public static bool IsBertPunctuation(Rune r)
    {
        int cp = r.Value;
        if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
        {
            return true;
        }
        return Rune.GetUnicodeCategory(r) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }

    /// <summary>Rust's <c>char::is_numeric</c>: Nd, Nl or No.</summary>
    public static bool IsNumeric(Rune r) => Rune.GetUnicodeCategory(r) is UnicodeCategory.DecimalDigitNumber
        or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;
}
