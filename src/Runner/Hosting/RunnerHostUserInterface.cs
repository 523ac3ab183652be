using System.Collections.ObjectModel;
using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Security;

namespace LoraPS.Runner.Hosting;

/// <summary>
/// Where PowerShell's text goes: output and Write-Host to stdout; errors, warnings, verbose, debug, progress
/// and prompts to stderr, so stdout carries only what the script produced. Colours only on terminals.
/// </summary>
public sealed class RunnerHostUserInterface : PSHostUserInterface
{
    readonly Terminal _terminal;
    readonly ProgressRenderer _progress;
    readonly RunnerRawUserInterface _raw;
    readonly object _lock = new();

    public RunnerHostUserInterface(Terminal terminal)
    {
        _terminal = terminal;
        _progress = new ProgressRenderer(terminal);
        _raw = new RunnerRawUserInterface(terminal);
    }

    /// <summary>Number of lines written as errors; the runner exits non-zero when it is not 0.</summary>
    public int ErrorLines { get; private set; }

    public override PSHostRawUserInterface RawUI => _raw;

    /// <summary>Lets PowerShell emit ANSI (table headers, error colours) only where it will be shown as colour.</summary>
    public override bool SupportsVirtualTerminal => _terminal.StdoutColor;

    // ---- stdout ----------------------------------------------------------------------------------

    public override void Write(string value) => Out(value, newLine: false);
    public override void WriteLine(string value) => Out(value, newLine: true);
    public override void WriteLine() => Out("", newLine: true);
    public override void Write(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value) =>
        Out(Colored(value, foregroundColor, backgroundColor, _terminal.StdoutColor), newLine: false);
    public override void WriteLine(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value) =>
        Out(Colored(value, foregroundColor, backgroundColor, _terminal.StdoutColor), newLine: true);

    /// <summary>Write-Host text arrives here (PSHOST-tagged information); other information records are shown
    /// by the engine through <see cref="WriteLine(string)"/> when $InformationPreference says so.</summary>
    public override void WriteInformation(InformationRecord record) { }

    // ---- stderr ----------------------------------------------------------------------------------

    public override void WriteErrorLine(string value)
    {
        lock (_lock) ErrorLines++;
        Err(value, ConsoleColor.Red);
    }

    public override void WriteWarningLine(string message) => Err("WARNING: " + message, ConsoleColor.Yellow);
    public override void WriteVerboseLine(string message) => Err("VERBOSE: " + message, ConsoleColor.Cyan);
    public override void WriteDebugLine(string message) => Err("DEBUG: " + message, ConsoleColor.Magenta);

    public override void WriteProgress(long sourceId, ProgressRecord record)
    {
        lock (_lock) _progress.Render(sourceId, record);
    }

    /// <summary>Called when a command finishes: its progress bars end with it.</summary>
    public void ResetProgress()
    {
        lock (_lock) _progress.Reset();
    }

    // ---- input -----------------------------------------------------------------------------------

    public override string ReadLine()
    {
        lock (_lock) _progress.Clear();
        return Console.In.ReadLine() ?? throw NotInteractive("read a line");
    }

    public override SecureString ReadLineAsSecureString()
    {
        var secure = new SecureString();
        foreach (char c in ReadLine()) secure.AppendChar(c);
        secure.MakeReadOnly();
        return secure;
    }

    public override Dictionary<string, PSObject> Prompt(string caption, string message, Collection<FieldDescription> descriptions)
    {
        Prompt(caption, message);
        var result = new Dictionary<string, PSObject>();
        foreach (var field in descriptions)
        {
            Err($"{field.Name}: ", null, newLine: false);
            result[field.Name] = PSObject.AsPSObject(ReadLine());
        }
        return result;
    }

    public override int PromptForChoice(string caption, string message, Collection<ChoiceDescription> choices, int defaultChoice)
    {
        // Labels use '&' before the hotkey: "&Yes" → [Y] Yes.
        var keys = choices.Select(c => { int amp = c.Label.IndexOf('&'); return amp >= 0 && amp + 1 < c.Label.Length ? c.Label[amp + 1].ToString() : c.Label; }).ToList();
        Prompt(caption, message);
        string options = string.Join(" ", choices.Select((c, i) => $"[{keys[i]}] {c.Label.Replace("&", "")}"));
        while (true)
        {
            Err(options + (defaultChoice >= 0 ? $" (default is \"{keys[defaultChoice]}\"): " : ": "), null, newLine: false);
            string answer = ReadLine().Trim();
            if (answer.Length == 0 && defaultChoice >= 0) return defaultChoice;
            int index = keys.FindIndex(k => string.Equals(k, answer, StringComparison.OrdinalIgnoreCase));
            if (index < 0) index = choices.ToList().FindIndex(c => string.Equals(c.Label.Replace("&", ""), answer, StringComparison.OrdinalIgnoreCase));
            if (index >= 0) return index;
        }
    }

    public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName) =>
        PromptForCredential(caption, message, userName, targetName, PSCredentialTypes.Default, PSCredentialUIOptions.Default);

    public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName,
                                                     PSCredentialTypes allowedCredentialTypes, PSCredentialUIOptions options)
    {
        Prompt(caption, message);
        if (string.IsNullOrEmpty(userName))
        {
            Err("User: ", null, newLine: false);
            userName = ReadLine();
        }
        Err("Password: ", null, newLine: false);
        return new PSCredential(userName, ReadLineAsSecureString());
    }

    void Prompt(string caption, string message)
    {
        if (Console.IsInputRedirected && Console.In.Peek() < 0) throw NotInteractive("prompt");
        if (!string.IsNullOrEmpty(caption)) Err(caption, null);
        if (!string.IsNullOrEmpty(message)) Err(message, null);
    }

    static PSInvalidOperationException NotInteractive(string what) => new(
        $"The script tried to {what}, but standard input is not interactive (or at its end). " +
        "Pass the values as parameters, or use -Confirm:$false / -Force where the command asks for confirmation.");

    // ---- plumbing --------------------------------------------------------------------------------

    void Out(string text, bool newLine)
    {
        lock (_lock)
        {
            if (!_terminal.StdoutColor) text = Terminal.StripAnsi(text);
            bool sameTerminal = _terminal.OutIsTerminal && _terminal.ErrorIsTerminal;
            if (sameTerminal) _progress.Suspend();
            if (newLine) _terminal.Out.WriteLine(text); else _terminal.Out.Write(text);
            if (sameTerminal && newLine) _progress.Restore();
        }
    }

    void Err(string text, ConsoleColor? color, bool newLine = true)
    {
        lock (_lock)
        {
            text = _terminal.StderrColor
                ? (color is { } c && !text.Contains('\x1b') ? Terminal.Sgr(c) + text + Terminal.Reset : text)
                : Terminal.StripAnsi(text);
            _progress.Suspend();
            if (newLine) _terminal.Error.WriteLine(text); else _terminal.Error.Write(text);
            if (newLine) _progress.Restore();
        }
    }

    static string Colored(string value, ConsoleColor foreground, ConsoleColor background, bool enabled)
    {
        if (!enabled) return value;
        // The engine passes the host's current colours when the caller asked for none; those are not colouring.
        bool fg = foreground != RunnerRawUserInterface.DefaultForeground, bg = background != RunnerRawUserInterface.DefaultBackground;
        if (!fg && !bg) return value;
        return (fg ? Terminal.Sgr(foreground) : "") + (bg ? Terminal.Sgr(background, background: true) : "") + value + Terminal.Reset;
    }
}
